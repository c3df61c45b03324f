//! [`worker_main`]: the same binary as a remote worker.

use std::time::Duration;

use sk_core::StopToken;

use crate::broker::Broker;
use crate::error::RemoteError;
use crate::worker::RemoteWorker;

/// The flag that makes a program a remote worker.
const FLAG: &str = "--sk-remote-worker";

/// Turns this process into a remote worker when its command line says so,
/// and exits when it stops; returns at once otherwise. Call it at the
/// start of `main`, after [`sk_process::init`] (the worker runs parts in
/// local worker processes of the same binary):
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     sk_process::init();
///     sk_remote::worker_main();
///     // ... the program as a coordinator.
/// }
/// ```
///
/// `my-app --sk-remote-worker nats://host:4222 --group gpu [--group cpu]`
/// with options `--concurrency N` (local slots, default one per CPU),
/// `--name NAME`, `--prefix PREFIX`, `--drain-secs N` (default 30),
/// `--creds FILE`, `--token TOKEN`, `--user USER --password PASSWORD`,
/// `--tls-required`, `--tls-ca FILE`, `--tls-cert FILE --tls-key FILE`.
/// It prints `sk-remote worker <name> ready` once bound to its groups,
/// drains on SIGTERM or SIGINT (the parts in flight finish within the
/// drain grace; the rest go back to other workers) and exits 0; a bad
/// command line or an unreachable broker exits 2, naming why.
pub fn worker_main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == FLAG) {
        return;
    }
    let code = match parse(&args).and_then(serve) {
        Ok(()) => 0,
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            eprintln!("sk-remote worker: {text}");
            2
        }
    };
    std::process::exit(code);
}

/// Parses the worker's command line.
fn parse(args: &[String]) -> Result<RemoteWorker, RemoteError> {
    let mut url = None;
    let mut broker_options: Vec<(String, String)> = Vec::new();
    let mut groups = Vec::new();
    let mut concurrency = None;
    let mut name = None;
    let mut drain = None;
    let mut tls_required = false;
    let mut it = args.iter();
    let usage = |m: String| RemoteError::Usage(m);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            FLAG => url = Some(value(FLAG)?),
            "--group" => groups.extend(
                value("--group")?
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned),
            ),
            "--concurrency" => {
                let v = value("--concurrency")?;
                concurrency =
                    Some(v.parse::<usize>().map_err(|_| {
                        usage(format!("--concurrency wants a number, not \"{v}\""))
                    })?);
            }
            "--drain-secs" => {
                let v = value("--drain-secs")?;
                drain = Some(
                    v.parse::<u64>()
                        .map_err(|_| usage(format!("--drain-secs wants a number, not \"{v}\"")))?,
                );
            }
            "--name" => name = Some(value("--name")?),
            "--tls-required" => tls_required = true,
            flag @ ("--prefix" | "--creds" | "--token" | "--user" | "--password" | "--tls-ca"
            | "--tls-cert" | "--tls-key") => broker_options.push((flag.to_owned(), value(flag)?)),
            other => return Err(usage(format!("unknown option \"{other}\""))),
        }
    }
    let url = url.ok_or_else(|| usage(format!("{FLAG} needs the server's URL")))?;
    let mut broker = Broker::new(url).require_tls(tls_required);
    let find = |flag: &str| {
        broker_options
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.clone())
    };
    if let Some(prefix) = find("--prefix") {
        broker = broker.prefix(prefix);
    }
    if let Some(creds) = find("--creds") {
        broker = broker.credentials_file(creds);
    }
    if let Some(token) = find("--token") {
        broker = broker.token(token);
    }
    match (find("--user"), find("--password")) {
        (Some(user), Some(password)) => broker = broker.user_password(user, password),
        (None, None) => {}
        _ => return Err(usage("--user and --password go together".to_owned())),
    }
    if let Some(ca) = find("--tls-ca") {
        broker = broker.root_certificate(ca);
    }
    match (find("--tls-cert"), find("--tls-key")) {
        (Some(cert), Some(key)) => broker = broker.client_certificate(cert, key),
        (None, None) => {}
        _ => return Err(usage("--tls-cert and --tls-key go together".to_owned())),
    }
    let mut worker = RemoteWorker::new(broker);
    if groups.is_empty() {
        return Err(usage("no group to serve (--group NAME)".to_owned()));
    }
    for group in groups {
        worker = worker.group(group);
    }
    if let Some(n) = concurrency {
        worker = worker.concurrency(n);
    }
    if let Some(name) = name {
        worker = worker.name(name);
    }
    if let Some(secs) = drain {
        worker = worker.drain_grace(Duration::from_secs(secs));
    }
    Ok(worker)
}

/// Serves until SIGTERM or SIGINT.
fn serve(worker: RemoteWorker) -> Result<(), RemoteError> {
    let stop = StopToken::new();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| usage_io("cannot watch SIGTERM", &e))?;
    let handle = signals.handle();
    let on_signal = stop.clone();
    let watcher = std::thread::Builder::new()
        .name("sk-remote:signals".to_owned())
        .spawn(move || {
            if signals.forever().next().is_some() {
                on_signal.stop();
            }
        })
        .map_err(|e| usage_io("cannot start the signal thread", &e))?;
    let summary = worker.run_with(&stop, |name| {
        println!("sk-remote worker {name} ready");
    });
    handle.close();
    let _ = watcher.join();
    let summary = summary?;
    eprintln!(
        "sk-remote worker: stopped ({} answered, {} handed back, {} poison, {} cancelled)",
        summary.answered, summary.handed_back, summary.poison, summary.cancelled
    );
    Ok(())
}

fn usage_io(what: &str, e: &std::io::Error) -> RemoteError {
    RemoteError::Bridge(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_worker_line_parses_and_bad_ones_say_why() {
        assert!(
            parse(&args(
                "--sk-remote-worker nats://h:4222 --group a,b --concurrency 3"
            ))
            .is_ok()
        );
        for (line, says) in [
            ("--sk-remote-worker", "needs a value"),
            ("--sk-remote-worker nats://h", "no group"),
            (
                "--sk-remote-worker nats://h --group a --concurrency x",
                "\"x\"",
            ),
            (
                "--sk-remote-worker nats://h --group a --bogus",
                "\"--bogus\"",
            ),
            (
                "--sk-remote-worker nats://h --group a --user u",
                "go together",
            ),
        ] {
            let e = parse(&args(line)).unwrap_err().to_string();
            assert!(e.contains(says), "{line}: {e}");
        }
    }
}
