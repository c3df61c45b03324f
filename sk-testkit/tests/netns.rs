//! Simulated hosts: a program inside one reaches servers of this machine
//! at the host's gateway, stops reaching them (without an error) while the
//! link is cut, reaches them again when it is mended, and leaves nothing
//! behind. They need root: without it these tests fail saying so.

// Test helpers outside #[test] functions may expect too.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sk_testkit::{Host, NatsServer};

const DEADLINE: Duration = Duration::from_secs(60);

/// Host `index`, or the test fails saying why hosts cannot be made here.
fn host(index: u8) -> Host {
    Host::available().unwrap_or_else(|e| panic!("{e}"));
    Host::create(index).unwrap_or_else(|e| panic!("{e}"))
}

/// The namespaces `ip netns list` shows.
fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Some(l.split_whitespace().next()?.to_owned()))
        .collect()
}

/// Whether the root namespace has a link named `name`.
fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ip runs")
        .success()
}

/// Runs `bash -c script` inside `host`, stopped by `timeout` after
/// `seconds`; whether it succeeded.
fn run_in(host: &Host, seconds: u32, script: &str) -> bool {
    host.command("timeout")
        .args([&seconds.to_string(), "bash", "-c", script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ip netns exec runs")
        .success()
}

/// A script sending the line `text` to `ip`:`port` over TCP.
fn send(ip: Ipv4Addr, port: u16, text: &str) -> String {
    format!("exec 3<>/dev/tcp/{ip}/{port}; echo {text} >&3")
}

/// A listener on a free port of every address of the root namespace.
fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("0.0.0.0:0").expect("a free port");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("bound").port();
    (listener, port)
}

/// The first connection to `listener` within `limit`: the client's address
/// and the first line it sent.
fn next_line(listener: &TcpListener, limit: Duration) -> Option<(IpAddr, String)> {
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false).ok()?;
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).ok()?;
                return Some((peer.ip(), line));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept failed: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_host_reaches_a_listener_on_all_addresses_until_its_link_is_cut() {
    sk_testkit::hang_guard(DEADLINE, || {
        let one = host(1);
        let two = host(2);
        assert_ne!(one.name(), two.name());
        assert_ne!(one.gateway(), two.gateway());
        assert!(one.name().len() <= 15 && one.link().len() <= 15);
        assert!(namespaces().iter().any(|n| n == one.name()));
        let (listener, port) = listener();

        for host in [&one, &two] {
            assert!(run_in(host, 5, &send(host.gateway(), port, "hi")));
            let (from, line) = next_line(&listener, Duration::from_secs(5)).expect("a client");
            assert_eq!(line, "hi\n");
            assert_eq!(from, IpAddr::V4(host.address()), "it comes from the host");
        }

        one.link_down().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !run_in(&one, 2, &send(one.gateway(), port, "cut")),
            "a host with its link cut connected"
        );
        assert!(
            !run_in(&one, 2, &send(two.gateway(), port, "cut")),
            "a host with its link cut connected through another host's gateway"
        );
        assert!(next_line(&listener, Duration::from_millis(200)).is_none());
        assert!(
            run_in(&two, 5, &send(two.gateway(), port, "two")),
            "the other host keeps its link"
        );
        assert_eq!(
            next_line(&listener, Duration::from_secs(5)).map(|(_, l)| l),
            Some("two\n".to_owned())
        );

        one.link_up().unwrap_or_else(|e| panic!("{e}"));
        assert!(run_in(&one, 5, &send(one.gateway(), port, "back")));
        assert_eq!(
            next_line(&listener, Duration::from_secs(5)).map(|(_, l)| l),
            Some("back\n".to_owned())
        );

        let (name, link) = (one.name().to_owned(), one.link().to_owned());
        drop(one);
        drop(two);
        assert!(!namespaces().contains(&name), "{name} is left behind");
        assert!(!link_exists(&link), "{link} is left behind");
    })
}

#[test]
fn a_connection_survives_a_cut_link_without_a_reset() {
    sk_testkit::hang_guard(DEADLINE, || {
        let host = host(3);
        let (listener, port) = listener();
        let gateway = host.gateway();
        let script = format!(
            "exec 3<>/dev/tcp/{gateway}/{port}; echo ready >&3; read -r -t 30 line <&3; \
             echo \"got $line\""
        );
        let (mut client, lines) =
            sk_testkit::spawn_lines(host.command("bash").args(["-c", &script])).expect("spawns");

        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut stream, _) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the host did not connect");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept failed: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking");
        let mut reader = BufReader::new(stream.try_clone().expect("clones"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("reads");
        assert_eq!(line, "ready\n");

        host.link_down().unwrap_or_else(|e| panic!("{e}"));
        stream
            .write_all(b"sent-while-cut\n")
            .expect("a write to a cut host is taken");
        assert!(
            lines.recv_timeout(Duration::from_secs(1)).is_err(),
            "the host got something while cut off"
        );
        host.link_up().unwrap_or_else(|e| panic!("{e}"));
        // Retransmission brings the line over once the link is back.
        assert_eq!(
            lines.recv_timeout(Duration::from_secs(20)).as_deref(),
            Ok("got sent-while-cut")
        );
        assert!(client.wait().expect("waits").success());
    })
}

#[test]
fn a_command_in_a_host_is_the_program_itself() {
    sk_testkit::hang_guard(DEADLINE, || {
        let host = host(4);
        let mut child = host
            .command("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawns");
        let pid = child.id();
        // `ip netns exec` joins the namespace, then execs the program in
        // the same process.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("it runs") != "sleep\n" {
            assert!(Instant::now() < deadline, "{pid} did not become `sleep`");
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = Command::new("ip")
            .args(["netns", "identify", &pid.to_string()])
            .output()
            .expect("ip runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.name());

        sk_testkit::kill(pid);
        let status = child.wait().expect("waits");
        assert_eq!(
            status.signal(),
            Some(9),
            "killing the pid kills the program"
        );
    })
}

#[test]
fn a_nats_server_on_all_addresses_answers_a_host_at_its_gateway() {
    sk_testkit::hang_guard(DEADLINE, || {
        let host = host(5);
        let mut server = NatsServer::start_on("0.0.0.0").unwrap_or_else(|e| panic!("{e}"));
        let port = server.port();
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
        assert_eq!(
            server.url_via(host.gateway()),
            format!("nats://{}:{port}", host.gateway())
        );
        let greets = |host: &Host, port: u16| {
            let script = format!("exec 3<>/dev/tcp/{}/{port}; head -c 5 <&3", host.gateway());
            let out = host
                .command("timeout")
                .args(["5", "bash", "-c", &script])
                .stderr(Stdio::null())
                .output()
                .expect("runs");
            out.stdout == b"INFO "
        };
        assert!(greets(&host, port), "the host reaches the server");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

        server.restart().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(server.port(), port);
        assert!(greets(&host, port), "the host reaches the restarted server");

        let local = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !greets(&host, local.port()),
            "a server on 127.0.0.1 is out of a host's reach"
        );
        assert!(NatsServer::start_on("not an address").is_err());
    })
}

#[test]
fn a_live_index_is_refused_and_free_again_after_drop() {
    sk_testkit::hang_guard(DEADLINE, || {
        let first = host(6);
        let err = Host::create(6).unwrap_err();
        assert!(err.contains("in use"), "{err}");
        drop(first);
        let again = host(6);
        assert!(namespaces().iter().any(|n| n == again.name()));
    })
}

#[test]
fn leftovers_of_a_dead_test_process_are_removed() {
    sk_testkit::hang_guard(DEADLINE, || {
        Host::available().unwrap_or_else(|e| panic!("{e}"));
        let mut gone = Command::new("true").spawn().expect("spawns");
        let dead = gone.id();
        gone.wait().expect("waits");
        let (name, link) = (format!("sk{dead}h7"), format!("skv{dead}h7"));
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("ip runs");
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        // A link of its own (its peer goes with it), as when a process left in
        // the namespace kept the namespace, and so the pair, alive.
        ip(&[
            "link",
            "add",
            &link,
            "type",
            "veth",
            "peer",
            "name",
            &format!("skw{dead}h7"),
        ]);
        let orphan = "10.200.255.252/30";
        ip(&[
            "route",
            "replace",
            "blackhole",
            orphan,
            "proto",
            "213",
            "metric",
            "4000",
        ]);

        let host = host(7);
        assert!(!namespaces().contains(&name), "{name} is left behind");
        assert!(!link_exists(&link), "{link} is left behind");
        let routes = Command::new("ip")
            .args(["route", "show", "type", "blackhole", "proto", "213"])
            .output()
            .expect("ip runs");
        let routes = String::from_utf8_lossy(&routes.stdout);
        let [a, b, c, d] = host.gateway().octets();
        let own = format!("{}/30", Ipv4Addr::new(a, b, c, d - 1));
        assert!(routes.contains(&own), "{routes}");
        if own != orphan {
            assert!(!routes.contains(orphan), "{routes}");
        }
    })
}
