//! The test NATS server: its own port and store, killed and started again
//! like a broker that crashed, and a clear error when it is not installed.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use sk_testkit::NatsServer;

/// The first line a client gets from the server at `url`, if it answers.
fn greeting(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

#[test]
fn a_test_server_has_jetstream_and_survives_a_kill_with_its_store() {
    sk_testkit::guarded(|| {
        let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        let info = greeting(server.port()).expect("the server answers");
        assert!(info.starts_with("INFO "), "{info}");
        assert!(
            info.contains("\"jetstream\":true"),
            "JetStream is on: {info}"
        );
        assert!(server.store_dir().join("jetstream").is_dir());

        let pid = server.pid().expect("it runs");
        server.kill();
        assert!(server.pid().is_none());
        assert!(sk_testkit::is_dead(pid));
        assert!(
            greeting(server.port()).is_none(),
            "a killed server answered"
        );

        server.restart().unwrap_or_else(|e| panic!("{e}"));
        assert!(greeting(server.port()).is_some_and(|l| l.starts_with("INFO ")));
        assert!(
            server.store_dir().join("jetstream").is_dir(),
            "the store is kept"
        );
    })
}

#[test]
fn a_missing_server_binary_says_how_to_install_it() {
    sk_testkit::guarded(|| {
        let err = NatsServer::start_binary("/nonexistent/nats-server").unwrap_err();
        assert!(err.contains("not found"), "{err}");
        assert!(err.contains("apt-get install nats-server"), "{err}");
        assert!(err.contains(sk_testkit::NATS_SERVER_ENV), "{err}");
    })
}
