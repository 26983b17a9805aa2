//! The server's dashboard in a real browser: the figures of requests the
//! test sent, the ranking of each priority, the last requests without
//! their text, its own refresh, tokens and the session cookie.

use serde_json::Value;

use crate::browser::Browser;
use crate::serve::{client, header, post, rt};
use crate::util::*;

/// Each priority ranks the three candidates, each with a state; the cost
/// ranking puts the cheapest first.
fn assert_rankings(b: &Browser) {
    let rankings = b.eval(
        "return [...document.querySelectorAll('#rankings [data-priority]')].map(t =>
            [t.dataset.priority, [...t.querySelectorAll('tr[data-model]')].map(r =>
                [r.dataset.model, r.querySelector('.state').textContent])])",
    );
    let rankings = rankings.as_array().unwrap();
    let names: Vec<&str> = rankings.iter().map(|r| r[0].as_str().unwrap()).collect();
    for p in ["speed", "cost", "quality", "balanced"] {
        assert!(names.contains(&p), "{p} in {names:?}");
    }
    for r in rankings {
        let rows = r[1].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{r}");
        for row in rows {
            let state = row[1].as_str().unwrap();
            assert!(
                ["measured", "prior", "probing", "cooling", "open"].contains(&state),
                "{row}"
            );
        }
    }
    let cheapest = &rankings.iter().find(|r| r[0] == "cost").unwrap()[1][0][0];
    assert_eq!(cheapest, "t/a", "the cost ranking puts the cheapest first");
}

#[test]
fn a_browser_shows_the_live_traffic_and_follows_it() {
    let env = Env::three();
    let s = env.serve(&["--models", "t/a,t/b,t/c"]);
    let c = client();
    let rt = rt();
    // Four distinct questions, two of them asked again (the cache answers),
    // and one body that is not JSON.
    let secret = "the-prompt-text-never-shows";
    let mut answered_by: std::collections::BTreeMap<String, usize> = Default::default();
    rt.block_on(async {
        for i in 0..4 {
            let (st, h, _) = post(&c, &s, &chat(None, &format!("{secret} {i}"))).await;
            assert_eq!(st, 200);
            *answered_by
                .entry(header(&h, "x-llmroute-model").to_string())
                .or_default() += 1;
        }
        for i in 0..2 {
            let (st, h, _) = post(&c, &s, &chat(None, &format!("{secret} {i}"))).await;
            assert_eq!((st, header(&h, "x-llmroute-cached")), (200, "true"));
        }
        let r = c
            .post(s.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
    });

    let b = Browser::start(env.dir.path());
    b.goto(&s.url("/"));
    let at = b.eval("return location.pathname");
    assert_eq!(at, "/dashboard", "/ leads to the dashboard");
    assert_eq!(b.card("requests"), "7");
    assert_eq!(b.card("answered"), "4");
    assert_eq!(b.card("cache_hits"), "2");
    assert_eq!(b.card("errors"), "1");
    assert_eq!(b.card("attempts"), "4");
    let models = b.eval(
        "return [...document.querySelectorAll('#models tr[data-model]')]
            .map(r => [r.dataset.model, r.cells[1].textContent])",
    );
    let mut expected: Vec<(String, usize)> = answered_by.into_iter().collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let expected: Vec<Value> = expected
        .iter()
        .map(|(m, n)| serde_json::json!([m, n.to_string()]))
        .collect();
    assert_eq!(models, Value::Array(expected), "the models that answered");
    assert_rankings(&b);
    let recent = b.eval(
        "return [...document.querySelectorAll('#recent tbody tr')].map(r => r.cells[2].textContent)",
    );
    assert_eq!(
        recent,
        serde_json::json!(["400", "200", "200", "200", "200", "200", "200"]),
        "newest first"
    );
    assert!(!b.text().contains(secret), "no prompt text on the page");

    // It follows the traffic by itself.
    rt.block_on(async {
        for i in 10..13 {
            let (st, _, _) = post(&c, &s, &chat(None, &format!("{secret} {i}"))).await;
            assert_eq!(st, 200);
        }
    });
    assert!(
        b.wait_until(
            "return document.querySelector('[data-k=\"requests\"] .v').textContent === '10'",
            20
        ),
        "the page did not refresh: {}",
        b.card("requests")
    );
    assert_eq!(b.card("attempts"), "7");
    let data = rt.block_on(dashboard_data(&c, &s));
    assert_eq!(data["totals"]["requests"], 10);
    assert!(!data.to_string().contains(secret));

    let charts = b.check_page("dashboard", Some(&s.url("/")));
    assert_eq!(charts, 4, "three over time and one histogram");
}

/// What `/dashboard/data` says now.
async fn dashboard_data(c: &reqwest::Client, s: &Served) -> Value {
    let r = c.get(s.url("/dashboard/data")).send().await.unwrap();
    r.json().await.unwrap()
}

/// A client that shows redirects rather than following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The sign-in form's post of `token`.
fn sign_in(c: &reqwest::Client, s: &Served, token: &str) -> reqwest::RequestBuilder {
    c.post(s.url("/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
}

/// The `name=value` of the cookie a `Set-Cookie` value sets.
fn cookie_of(set: &str) -> String {
    set.split(';').next().unwrap().to_string()
}

/// A server with a client token and an admin token.
fn with_tokens(env: &Env) -> Served {
    env.serve_with(
        &[],
        &[
            ("LLMROUTE_AUTH_TOKENS", "tok-client-1"),
            ("LLMROUTE_ADMIN_TOKENS", "tok-admin-1"),
        ],
    )
}

#[test]
fn with_tokens_the_dashboard_wants_one_and_a_session_opens_it_alone() {
    let env = Env::three();
    let s = with_tokens(&env);
    let c = no_redirects();
    let rt = rt();
    rt.block_on(async {
        let get = |path: &str, auth: Option<&str>, cookie: Option<&str>| {
            let mut r = c.get(s.url(path));
            if let Some(a) = auth {
                r = r.bearer_auth(a);
            }
            if let Some(k) = cookie {
                r = r.header("cookie", k);
            }
            r.send()
        };
        let r = get("/dashboard", None, None).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.text().await.unwrap().contains("id=\"sign-in\""));
        let r = get("/dashboard/data", None, None).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["type"], "authentication_error");
        for t in ["tok-client-1", "tok-admin-1"] {
            let r = get("/dashboard/data", Some(t), None).await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{t}");
        }
        let login = |token: &str| sign_in(&c, &s, token).send();
        let r = login("wrong").await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.headers().get("set-cookie").is_none());
        let r = sign_in(&c, &s, "tok-client-1")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap();
        let set = r.headers()["set-cookie"].to_str().unwrap();
        assert!(set.ends_with("; Secure"), "behind a TLS proxy: {set}");
        let r = login("tok-client-1").await.unwrap();
        assert_eq!(r.status().as_u16(), 303);
        assert!(!r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure"));
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("tok-client-1"), "the cookie is not the token");
        let cookie = cookie_of(&set);
        let session = cookie.split_once('=').unwrap().1.to_string();
        let r = get("/dashboard/data", None, Some(&cookie)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        // The cookie opens the dashboard only, not the API.
        let r = get("/v1/models", Some(&session), Some(&cookie))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let r = c
            .post(s.url("/v1/chat/completions"))
            .header("cookie", &cookie)
            .json(&chat(None, "hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let r = c
            .post(s.url("/dashboard/logout"))
            .header("origin", s.url(""))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        assert!(r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        // Signing out ends the session itself, not only the browser's copy.
        let r = get("/dashboard/data", None, Some(&cookie)).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "a copied cookie is dead too");
    });
}

#[test]
fn another_site_cannot_sign_anyone_in_or_out() {
    let env = Env::three();
    let s = with_tokens(&env);
    let c = no_redirects();
    rt().block_on(async {
        let r = sign_in(&c, &s, "tok-client-1").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303);
        let cookie = cookie_of(r.headers()["set-cookie"].to_str().unwrap());
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ] {
            let r = sign_in(&c, &s, "tok-client-1")
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 403, "{name}");
            assert!(r.headers().get("set-cookie").is_none());
            let r = c
                .post(s.url("/dashboard/logout"))
                .header(name, value)
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 403, "{name}");
        }
        let r = c
            .get(s.url("/dashboard/data"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "still signed in");
    });
}

#[test]
fn a_person_signs_in_once_in_the_page_s_form_and_out_again() {
    let env = Env::three();
    let s = with_tokens(&env);
    let b = Browser::start(env.dir.path());
    b.goto(&s.url("/dashboard"));
    assert!(b
        .text()
        .contains("needs one of its trusted or admin tokens"));
    b.screenshot("dashboard-sign-in");
    b.eval(
        "document.getElementById('token').value = 'tok-admin-1';
         document.getElementById('sign-in').submit();",
    );
    assert!(
        b.wait_until("return !!document.getElementById('totals')", 10),
        "signed in: {}",
        b.text()
    );
    b.goto(&s.url("/dashboard"));
    assert!(b.eval("return !!document.getElementById('totals')") == true);
    assert!(b.text().contains("Sign out"));
    b.eval("document.querySelector('header form button').click()");
    assert!(
        b.wait_until("return !!document.getElementById('sign-in')", 10),
        "signed out: {}",
        b.text()
    );
    b.goto(&s.url("/dashboard"));
    assert!(b
        .text()
        .contains("needs one of its trusted or admin tokens"));
    // A 401 for the sign-in page's first load is the only error.
    let errors: Vec<String> = b
        .console_errors()
        .into_iter()
        .filter(|e| !e.contains("401"))
        .collect();
    assert_eq!(errors, Vec::<String>::new());
    let log = s.log();
    for secret in ["tok-client-1", "tok-admin-1"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn a_request_past_its_deadline_counts_its_attempt_on_the_dashboard() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::Hang);
    let s = env.serve(&["--models", "t/a", "--deadline", "300ms"]);
    let rt = rt();
    let c = client();
    let (status, _, _) = rt.block_on(post(&c, &s, &chat(None, "late")));
    assert_eq!(status, 504);
    let data = rt.block_on(dashboard_data(&c, &s));
    assert_eq!(data["totals"]["requests"], 1);
    assert_eq!(data["totals"]["errors"], 1);
    assert_eq!(data["totals"]["attempts"], 1, "{}", data["totals"]);
    assert_eq!(data["models"][0]["model"], "t/a");
    assert_eq!(data["models"][0]["errors"], 1);
    assert_eq!(data["live"]["recent"][0]["attempts"], 1);
    assert_eq!(data["live"]["recent"][0]["status"], 504);
}

#[test]
fn no_dashboard_turns_it_off_and_nothing_else() {
    let env = Env::three();
    for (args, config) in [
        (&["--models", "t/a", "--no-dashboard"][..], ""),
        (&["--models", "t/a"][..], "[serve]\ndashboard = false\n"),
    ] {
        // The config file every test's command reads.
        let conf_dir = env.path("config").join("llmroute");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::write(conf_dir.join("config.toml"), config).unwrap();
        let s = env.serve(args);
        rt().block_on(async {
            let c = client();
            for path in ["/", "/dashboard", "/dashboard/data", "/dashboard/app.js"] {
                let r = c.get(s.url(path)).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 404, "{path} with {args:?} {config:?}");
            }
            let r = c.get(s.url("/v1/models")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
        });
    }
}

#[test]
fn the_dashboard_s_scores_are_shown_as_everywhere_else() {
    // A lone candidate is best on every term: its score, tie-break
    // included, is shown as 1, as /v1/models and --explain show it.
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let rt = rt();
    let c = client();
    let (status, _, _) = rt.block_on(post(&c, &s, &chat(None, "one")));
    assert_eq!(status, 200);
    let data = rt.block_on(dashboard_data(&c, &s));
    let rankings = data["live"]["rankings"].as_array().unwrap();
    assert!(!rankings.is_empty(), "{data}");
    for r in rankings {
        for c in r["candidates"].as_array().unwrap() {
            let score = c["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{c}");
        }
    }
}
