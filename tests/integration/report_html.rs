//! `llmroute report --format html`: the page a real browser shows for a
//! store whose rows the test knows (those of `report.rs`), every expected
//! figure computed here from the rows.

use std::collections::BTreeMap;

use crate::browser::Browser;
use crate::report::{nearest_rank, now_ms, rows, store_with, Rows, ODD};
use crate::util::*;

/// Milliseconds as the page writes them.
fn ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1} ms")
    } else if x < 10_000.0 {
        format!("{x:.0} ms")
    } else {
        format!("{:.1} s", x / 1000.0)
    }
}

/// The models of the last day's attempts (not cache hits), most first,
/// then by name, with their attempts and successful latencies.
fn models_of(d: &Rows, from: i64) -> Vec<(String, usize, Vec<f64>)> {
    let mut by: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
    for a in d.atts.iter().filter(|a| a.ts >= from && !a.cached) {
        let e = by.entry(a.model.clone()).or_default();
        e.0 += 1;
        if a.ok {
            e.1.extend(a.latency_ms);
        }
    }
    let mut out: Vec<(String, usize, Vec<f64>)> =
        by.into_iter().map(|(m, (n, l))| (m, n, l)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[test]
fn a_browser_shows_the_report_s_figures_offline_in_both_themes() {
    let env = Env::three();
    let now = now_ms();
    let d = rows(now);
    store_with(&env, &d);
    let file = env.path("report.html");
    let out = env
        .cmd()
        .args(["report", "--format", "html", "--output"])
        .arg(&file)
        .run();
    out.assert_code(0);
    assert!(out.stdout.is_empty(), "the page goes to the file only");
    let html = String::from_utf8(read(&file)).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for outside in ["src=", "href=", "url(", "@import", "<script", "<link"] {
        assert!(!html.contains(outside), "the page names {outside}");
    }

    // Expected figures, from the rows.
    let from = now - 24 * 3_600_000;
    let day: Vec<_> = d.reqs.iter().filter(|r| r.ts >= from).collect();
    let errors = day.iter().filter(|r| !r.ok).count();
    let hits = day.iter().filter(|r| r.cached).count();
    let answered: Vec<f64> = day
        .iter()
        .filter(|r| r.ok && !r.cached)
        .map(|r| r.latency_ms)
        .collect();
    let models = models_of(&d, from);
    assert!(models.iter().any(|m| m.0 == ODD));

    let b = Browser::start(env.dir.path());
    b.goto(&format!("file://{}", file.display()));
    b.console();
    b.goto(&format!("file://{}", file.display()));
    assert_eq!(b.card("requests"), day.len().to_string());
    assert_eq!(b.card("errors"), errors.to_string());
    assert_eq!(b.card("cache_hits"), hits.to_string());
    assert_eq!(b.card("answered"), answered.len().to_string());
    assert_eq!(b.card("p50"), ms(nearest_rank(&answered, 50.0).unwrap()));
    assert_eq!(b.card("p99"), ms(nearest_rank(&answered, 99.0).unwrap()));
    let rows = b.eval(
        "return [...document.querySelectorAll('#models tr[data-model]')]
            .map(r => [r.dataset.model, r.cells[1].textContent])",
    );
    let expected: Vec<serde_json::Value> = models
        .iter()
        .map(|(m, n, _)| serde_json::json!([m, n.to_string()]))
        .collect();
    assert_eq!(rows, serde_json::Value::Array(expected), "the model rows");
    // A histogram for each model with a successful attempt, whose bars'
    // description adds up to its successful attempts.
    let drawn = b.eval(
        "return [...document.querySelectorAll('figure[data-model]')].map(f =>
            [f.dataset.model, f.querySelector('desc').textContent])",
    );
    let with_latency: Vec<_> = models.iter().filter(|m| !m.2.is_empty()).collect();
    assert_eq!(
        drawn.as_array().unwrap().len(),
        with_latency.len(),
        "{drawn}"
    );
    for (fig, (model, _, latencies)) in drawn.as_array().unwrap().iter().zip(&with_latency) {
        assert_eq!(fig[0], model.as_str());
        let desc = fig[1].as_str().unwrap();
        let sum: usize = desc
            .split(": ")
            .skip(1)
            .filter_map(|part| part.split(';').next()?.trim().parse::<usize>().ok())
            .sum();
        assert_eq!(sum, latencies.len(), "{model}: {desc}");
    }
    // The numbers over time add up to the window's requests.
    let over_time = b.eval(
        "return [...document.querySelectorAll('#over-time tbody tr')]
            .reduce((n, r) => n + Number(r.cells[1].textContent.replace(/,/g, '')), 0)",
    );
    assert_eq!(over_time, day.len());
    // Every chart says what it shows in words.
    let unlabelled = b.eval(
        "return [...document.querySelectorAll('svg')].filter(s =>
            !s.querySelector('title') || !s.querySelector('desc')).length",
    );
    assert_eq!(unlabelled, 0);
    assert_eq!(b.eval("return document.scripts.length"), 0);

    let charts = b.check_page("report", None);
    assert_eq!(
        charts,
        3 + with_latency.len(),
        "three over time and the histograms"
    );
}

#[test]
fn html_goes_to_standard_output_and_a_bad_output_path_is_an_error() {
    let env = Env::three();
    store_with(&env, &rows(now_ms()));
    let out = env.cmd().args(["report", "--format", "html"]).run();
    out.assert_code(0);
    let page = out.stdout.clone();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    let missing = env.path("no/such/dir/r.html");
    let out = env
        .cmd()
        .args(["report", "--format", "json", "-o"])
        .arg(&missing)
        .run();
    assert_ne!(out.code, 0);
    let err = &out.stderr;
    assert!(err.contains("cannot write the report to"), "{err}");
    assert!(!env.path("no").exists());
    // The file is replaced whole; no temporary file stays beside it.
    let file = env.path("r.json");
    std::fs::write(&file, "old").unwrap();
    env.cmd()
        .args(["report", "--json", "--output"])
        .arg(&file)
        .run()
        .assert_code(0);
    let v: serde_json::Value = serde_json::from_slice(&read(&file)).unwrap();
    assert!(v["requests"].as_i64().unwrap() > 0);
    let names: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// `-o` writes where the path leads: through a symbolic link, into a FIFO
/// or a device, and over a file that keeps its mode.
#[test]
fn output_goes_through_links_fifos_and_keeps_a_file_s_mode() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let env = Env::three();
    store_with(&env, &rows(now_ms()));
    let report = |path: &std::path::Path| {
        env.cmd()
            .args(["report", "--json", "-o"])
            .arg(path)
            .run()
            .assert_code(0);
    };
    let kept = env.path("kept.json");
    std::fs::write(&kept, "old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    report(&kept);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let target = env.path("target.json");
    std::fs::write(&target, "old").unwrap();
    let link = env.path("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    report(&link);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(read(&target).starts_with(b"{"), "written through the link");
    // A link to a file not made yet (relative, as `ln -s` makes them) makes it.
    std::fs::create_dir(env.path("reports")).unwrap();
    let dangling = env.path("dangling.json");
    std::os::unix::fs::symlink("reports/new.json", &dangling).unwrap();
    report(&dangling);
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(read(&env.path("reports/new.json")).starts_with(b"{"));
    let fifo = env.path("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    report(&fifo);
    let got = reader.join().unwrap();
    assert!(got.starts_with(b"{"), "{}", String::from_utf8_lossy(&got));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}
