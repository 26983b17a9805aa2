//! Standalone fake OpenRouter server.
//!
//! Prints its base URL (`http://127.0.0.1:PORT/api/v1`) as the only line on
//! stdout, then serves until the process is killed.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use fake_openrouter::{Behavior, CatalogueBehavior, Config, Dialect, FakeServer, ModelSpec};

const USAGE: &str = "\
usage: fake-openrouter [OPTIONS]

Options:
  --port N                   port to bind on 127.0.0.1 (default 0: ephemeral)
  --latency-ms N             default latency of every model, in milliseconds
  --model-latency MODEL=MS   latency of one model (repeatable)
  --unknown-model MODEL=DIALECT
                             answer MODEL as a server that does not serve it:
                             openrouter, litellm, vllm, ollama or openai
                             (repeatable)
  --model ID                 add a model to the catalogue (repeatable;
                             default: fast/a, fast/b, fast/c)
  --catalogue FILE           serve FILE verbatim for GET /models
  --api-key KEY              require `Authorization: Bearer KEY`
  --workers N                runtime worker threads (default 2)
  --log                      print each request to stderr
  -h, --help                 show this help
";

struct Args {
    port: u16,
    latency_ms: Option<u64>,
    model_latency: Vec<(String, u64)>,
    unknown_models: Vec<(String, Dialect)>,
    models: Vec<String>,
    catalogue: Option<String>,
    api_key: Option<String>,
    workers: usize,
    log: bool,
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: invalid number `{value}`"))
}

fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        port: 0,
        latency_ms: None,
        model_latency: Vec::new(),
        unknown_models: Vec::new(),
        models: Vec::new(),
        catalogue: None,
        api_key: None,
        workers: 2,
        log: false,
    };
    while let Some(arg) = raw.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let value = |raw: &mut dyn Iterator<Item = String>| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => raw.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => args.port = parse_number(&flag, &value(&mut raw)?)?,
            "--latency-ms" => args.latency_ms = Some(parse_number(&flag, &value(&mut raw)?)?),
            "--model-latency" => {
                let v = value(&mut raw)?;
                let (model, ms) = v
                    .rsplit_once('=')
                    .ok_or_else(|| format!("{flag}: expected MODEL=MS, got `{v}`"))?;
                args.model_latency
                    .push((model.to_owned(), parse_number(&flag, ms)?));
            }
            "--unknown-model" => {
                let v = value(&mut raw)?;
                let (model, name) = v
                    .rsplit_once('=')
                    .ok_or_else(|| format!("{flag}: expected MODEL=DIALECT, got `{v}`"))?;
                let dialect = Dialect::from_name(name)
                    .ok_or_else(|| format!("{flag}: unknown dialect `{name}`"))?;
                args.unknown_models.push((model.to_owned(), dialect));
            }
            "--model" => args.models.push(value(&mut raw)?),
            "--catalogue" => args.catalogue = Some(value(&mut raw)?),
            "--api-key" => args.api_key = Some(value(&mut raw)?),
            "--workers" => args.workers = parse_number(&flag, &value(&mut raw)?)?,
            "--log" if inline.is_none() => args.log = true,
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-openrouter: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let catalogue = match &args.catalogue {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("fake-openrouter: cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let models = if args.models.is_empty() {
        vec![
            "fast/a".to_owned(),
            "fast/b".to_owned(),
            "fast/c".to_owned(),
        ]
    } else {
        args.models.clone()
    };
    let server = match FakeServer::try_start_with(Config {
        models: models.iter().map(|id| ModelSpec::new(id)).collect(),
        log_requests: args.log,
        api_key: args.api_key.clone(),
        port: args.port,
        workers: args.workers,
    }) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-openrouter: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(ms) = args.latency_ms {
        server.set_fallback(Behavior::ok_after(ms));
    }
    for (model, ms) in &args.model_latency {
        server.set_default(model, Behavior::ok_after(*ms));
    }
    for (model, dialect) in &args.unknown_models {
        server.set_default(model, Behavior::unknown_model(*dialect));
    }
    if let Some(text) = catalogue {
        server.set_catalogue_behavior(CatalogueBehavior::Raw(text));
    }

    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", server.base_url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);

    if args.log {
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let requests = server.take_requests();
            if requests.is_empty() {
                continue;
            }
            let mut stderr = std::io::stderr().lock();
            for r in requests {
                let _ = writeln!(
                    stderr,
                    "{} {} model={} body={}B",
                    r.method,
                    r.path,
                    r.model.as_deref().unwrap_or("-"),
                    r.body.len()
                );
            }
        }
    }
    loop {
        std::thread::park();
    }
}
