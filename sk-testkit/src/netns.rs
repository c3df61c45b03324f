//! [`Host`]: a simulated machine for network fault trials — a network
//! namespace joined to this one by a veth pair — whose link a test can cut
//! and mend, so that workers on it lose the broker the way a host does.
//!
//! Every host gets a /30 of `10.200.0.0/16`: the root-namespace end of
//! the pair ([`Host::gateway`], `.1`) and the namespace end
//! ([`Host::address`], `.2`, the namespace's default route). The gateway
//! address is local to this machine, so a program inside the namespace
//! reaches every listener bound to `0.0.0.0` (or to a gateway address)
//! through it; no forwarding is involved.
//!
//! Creating, cutting and deleting hosts needs root and `ip` (iproute2);
//! [`Host::available`] says whether both are there.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The second octet of every host subnet: hosts live in `10.200.0.0/16`.
const NET_OCTET: u8 = 200;

/// How many /30 subnets `10.200.0.0/16` holds.
const SLOTS: u16 = 1 << 14;

/// The routing protocol number marking this module's blackhole routes
/// (any number `ip route` does not use for something else).
const ROUTE_PROTO: &str = "213";

/// The metric of the blackhole routes: higher than the kernel's route to
/// a host's /30, so it applies only while the host's link is down.
const ROUTE_METRIC: &str = "4000";

/// The interface name of a host's end of its veth pair.
const INNER_LINK: &str = "eth0";

/// The file every process creating or deleting hosts locks, so that two
/// test processes never pick the same subnet or clean up each other's.
const LOCK_PATH: &str = "/run/sk-testkit-netns.lock";

/// How long a link has to come up.
const UP_WITHIN: Duration = Duration::from_secs(5);

/// The indices of this process's live hosts.
static LIVE: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

/// A simulated host: a network namespace of its own with one link, a veth
/// pair to the root namespace. Dropping it deletes the namespace and the
/// link.
///
/// Its namespace is named `sk<pid>h<index>` (`<pid>` this process's id);
/// its link's root-namespace end `skv<pid>h<index>`, the namespace end
/// `eth0`. Namespaces and links with these names left by test processes
/// that died are deleted by the next [`Host::create`].
#[derive(Debug)]
pub struct Host {
    index: u8,
    name: String,
    link: String,
    /// Which /30 of `10.200.0.0/16` it has.
    slot: u16,
}

impl Host {
    /// Whether hosts can be made here: this process runs as root and `ip`
    /// can create a network namespace and a veth pair (it makes one and
    /// deletes it; the answer is kept for the rest of the process).
    ///
    /// # Errors
    ///
    /// A message saying what is missing, to print when skipping a test or
    /// to fail it with.
    pub fn available() -> Result<(), String> {
        static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
        ANSWER.get_or_init(probe).clone()
    }

    /// Creates host number `index`: its namespace, its link (up at both
    /// ends, with addresses and a default route through the gateway), and
    /// `lo` up inside.
    ///
    /// `index` tells this process's live hosts apart: two live hosts of
    /// one process (of one test binary, whose tests run in parallel) need
    /// different indices.
    ///
    /// # Errors
    ///
    /// A message: what [`Host::available`] says is missing, `index` in use
    /// by a live host of this process, or the `ip` command that failed.
    pub fn create(index: u8) -> Result<Host, String> {
        Host::available()?;
        let pid = std::process::id();
        let lock = lock();
        {
            let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
            if !live.insert(index) {
                return Err(format!(
                    "host index {index} is in use by a live Host of this process \
                     (namespace sk{pid}h{index}); give each live Host its own index"
                ));
            }
        }
        remove_stale();
        let host = Host {
            index,
            name: format!("sk{pid}h{index}"),
            link: format!("skv{pid}h{index}"),
            slot: free_slot(pid, index),
        };
        let built = host.build();
        // Unlocked first: on an error, dropping `host` (which locks again)
        // removes what `build` made.
        drop(lock);
        built?;
        host.wait_up()?;
        Ok(host)
    }

    /// The index it was created with.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The name of its network namespace (for `ip netns exec` and `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the root-namespace end of its link (what
    /// [`Host::link_down`] sets down).
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Its own address, the one programs inside it connect from.
    pub fn address(&self) -> Ipv4Addr {
        self.ip(2)
    }

    /// The root-namespace end of its link: the address to reach a server
    /// of this machine at from inside the host (the server bound to it or
    /// to `0.0.0.0`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.ip(1)
    }

    /// A command running `program` inside the host
    /// (`ip netns exec <name> <program>`).
    ///
    /// `ip netns exec` joins the namespace and then execs `program`, so the
    /// child's process id is the program's own: killing it kills the
    /// program. (A program that is not found makes the child exit with
    /// status 255, not a spawn error.)
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Cuts the host's link: sets the root-namespace end down. Packets
    /// either way are dropped without a word — no TCP reset, no ICMP
    /// error — until [`Host::link_up`]; connections stay open at both ends
    /// and resume when the link is back (unless their own timeouts fire
    /// first).
    ///
    /// # Errors
    ///
    /// The `ip` command that failed.
    pub fn link_down(&self) -> Result<(), String> {
        ip(&["link", "set", &self.link, "down"]).map(drop)
    }

    /// Mends the link [`Host::link_down`] cut, and waits until it carries
    /// packets again.
    ///
    /// # Errors
    ///
    /// The `ip` command that failed, or the link not coming up in 5 s.
    pub fn link_up(&self) -> Result<(), String> {
        ip(&["link", "set", &self.link, "up"])?;
        self.wait_up()
    }

    fn ip(&self, last: u8) -> Ipv4Addr {
        slot_ip(self.slot, last)
    }

    fn subnet(&self) -> String {
        format!("{}/30", self.ip(0))
    }

    /// Makes the namespace and the link. Run with the lock held.
    fn build(&self) -> Result<(), String> {
        let (name, link) = (self.name.as_str(), self.link.as_str());
        let gateway = self.gateway().to_string();
        let subnet = self.subnet();
        ip(&["netns", "add", name])?;
        ip(&[
            "link", "add", link, "type", "veth", "peer", "name", INNER_LINK, "netns", name,
        ])?;
        ip(&["addr", "add", &format!("{gateway}/30"), "dev", link])?;
        ip(&["link", "set", link, "up"])?;
        // While the link is down the kernel's route to the subnet is gone;
        // without this one, replies to the host would leave by the
        // machine's default route.
        blackhole_route("replace", &subnet)?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", name];
            all.extend_from_slice(args);
            ip(&all).map(drop)
        };
        inside(&["link", "set", "lo", "up"])?;
        let own = format!("{}/30", self.address());
        inside(&["addr", "add", &own, "dev", INNER_LINK])?;
        inside(&["link", "set", INNER_LINK, "up"])?;
        inside(&["route", "add", "default", "via", &gateway])?;
        // A permanent neighbour entry: with the link down, a connect from
        // inside then waits for an answer like behind a cut cable, instead
        // of failing with "No route to host" when ARP gives up.
        let mac = std::fs::read_to_string(format!("/sys/class/net/{link}/address"))
            .map_err(|e| format!("cannot read the MAC address of {link}: {e}"))?;
        inside(&[
            "neigh",
            "replace",
            &gateway,
            "lladdr",
            mac.trim(),
            "dev",
            INNER_LINK,
            "nud",
            "permanent",
        ])
    }

    /// Waits until both ends of the link are up.
    fn wait_up(&self) -> Result<(), String> {
        let deadline = Instant::now() + UP_WITHIN;
        loop {
            let outer = std::fs::read_to_string(format!("/sys/class/net/{}/operstate", self.link))
                .is_ok_and(|state| state.trim() == "up");
            let inner = outer
                && ip(&["-n", &self.name, "-o", "link", "show", INNER_LINK])
                    .is_ok_and(|line| line.contains(" state UP "));
            if inner {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the link of host {} ({}) did not come up within {UP_WITHIN:?}",
                    self.name, self.link
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Deletes the link, the namespace and the blackhole route, ignoring
    /// errors (some may not exist). Run with the lock held.
    fn teardown(&self) {
        // Deleting the link first cuts the host off at once, even when
        // processes left inside keep the namespace alive.
        let _ = ip(&["link", "del", &self.link]);
        let _ = ip(&["netns", "del", &self.name]);
        let _ = blackhole_route("del", &self.subnet());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _lock = lock();
        self.teardown();
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.index);
    }
}

/// `ip route <verb>` of this module's blackhole route to `subnet`.
fn blackhole_route(verb: &str, subnet: &str) -> Result<String, String> {
    ip(&[
        "route",
        verb,
        "blackhole",
        subnet,
        "proto",
        ROUTE_PROTO,
        "metric",
        ROUTE_METRIC,
    ])
}

/// Runs `ip` with `args`; its standard output.
fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "`ip` not found: simulated hosts need iproute2 (Debian: `apt-get install \
                 iproute2`)"
                    .to_owned()
            } else {
                format!("cannot run `ip`: {e}")
            }
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Holds the lock of [`LOCK_PATH`] while alive (nothing when the file
/// cannot be opened: the lock only guards against other test processes).
fn lock() -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).ok()?;
    Some(file)
}

/// The check of [`Host::available`].
fn probe() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err(
            "simulated hosts need root (network namespaces and veth pairs); run the tests as \
             root"
                .to_owned(),
        );
    }
    let pid = std::process::id();
    let (name, link) = (format!("sk{pid}p"), format!("skv{pid}p"));
    let _lock = lock();
    let made = ip(&["netns", "add", &name]).and_then(|_| {
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", INNER_LINK, "netns", &name,
        ])
    });
    let _ = ip(&["link", "del", &link]);
    let _ = ip(&["netns", "del", &name]);
    made.map(drop).map_err(|e| {
        format!("cannot make a network namespace with a veth pair (is this a container without CAP_SYS_ADMIN?): {e}")
    })
}

/// The process id in a name this module gives namespaces (`prefix` `sk`)
/// or links (`prefix` `skv`): `<prefix><pid>h<index>` or `<prefix><pid>p`.
fn owner(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let (pid, tail) = rest.split_at(digits);
    let ours = tail == "p"
        || tail
            .strip_prefix('h')
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    if ours { pid.parse().ok() } else { None }
}

/// Whether the namespace or link of process `pid` is left over: its
/// process is gone, or it is this process but no live host has it. Run
/// with the lock held (a host being made or probed holds it too).
fn stale(pid: u32, name: &str, prefix: &str) -> bool {
    if pid == std::process::id() {
        let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        !live
            .iter()
            .any(|index| name == format!("{prefix}{pid}h{index}"))
    } else {
        crate::is_dead(pid)
    }
}

/// Deletes namespaces, links and blackhole routes left by test processes
/// that died before dropping their hosts. Run with the lock held.
fn remove_stale() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner(name, "sk").is_some_and(|pid| stale(pid, name, "sk")) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        // Lines read `7: skv123h1@if2: <...` (the `@...` when it has a peer).
        let names = list
            .lines()
            .filter_map(|l| l.split(": ").nth(1)?.split('@').next());
        for name in names {
            if owner(name, "skv").is_some_and(|pid| stale(pid, name, "skv")) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
    let in_use = slots_with_addresses();
    for (subnet, slot) in blackhole_routes() {
        if slot.is_some_and(|slot| !in_use.contains(&slot)) {
            let _ = blackhole_route("del", &subnet);
        }
    }
}

/// This module's blackhole routes: each subnet (`a.b.c.d/30`) and its
/// slot.
fn blackhole_routes() -> Vec<(String, Option<u16>)> {
    let Ok(routes) = ip(&[
        "-4",
        "route",
        "show",
        "type",
        "blackhole",
        "proto",
        ROUTE_PROTO,
    ]) else {
        return Vec::new();
    };
    routes
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|subnet| {
            let slot = subnet
                .split('/')
                .next()
                .and_then(|a| a.parse().ok())
                .and_then(slot_of);
            (subnet.to_owned(), slot)
        })
        .collect()
}

/// Address `last` (0 to 3) of `slot`'s /30 of `10.200.0.0/16`.
fn slot_ip(slot: u16, last: u8) -> Ipv4Addr {
    let [high, low] = (slot * 4).to_be_bytes();
    Ipv4Addr::new(10, NET_OCTET, high, low + last)
}

/// The slot of `10.200.0.0/16` that `addr` is in.
fn slot_of(addr: Ipv4Addr) -> Option<u16> {
    let [a, b, c, d] = addr.octets();
    (a == 10 && b == NET_OCTET).then(|| u16::from_be_bytes([c, d]) / 4)
}

/// The slots holding an address of the root namespace.
fn slots_with_addresses() -> BTreeSet<u16> {
    let Ok(list) = ip(&["-o", "-4", "addr", "show"]) else {
        return BTreeSet::new();
    };
    // Lines read `7: skv123h1    inet 10.200.3.1/30 scope global ...`.
    list.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|&w| w == "inet")?;
            let addr = words.next()?.split('/').next()?.parse().ok()?;
            slot_of(addr)
        })
        .collect()
}

/// A slot no address or blackhole route uses, starting the search at one
/// derived from `pid` and `index`. Run with the lock held.
fn free_slot(pid: u32, index: u8) -> u16 {
    let mut used = slots_with_addresses();
    used.extend(blackhole_routes().into_iter().filter_map(|(_, slot)| slot));
    let mixed = u64::from(pid)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(index).wrapping_mul(0x0100_0000_01B3));
    let start = u16::try_from((mixed >> 40) % u64::from(SLOTS)).unwrap_or(0);
    (0..SLOTS)
        .map(|step| (start + step) % SLOTS)
        .find(|slot| !used.contains(slot))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_this_module_say_whose_they_are() {
        assert_eq!(owner("sk123h4", "sk"), Some(123));
        assert_eq!(owner("sk123p", "sk"), Some(123));
        assert_eq!(owner("skv123h255", "skv"), Some(123));
        assert_eq!(owner("skv123h4", "sk"), None);
        assert_eq!(owner("sk123h", "sk"), None);
        assert_eq!(owner("sk123", "sk"), None);
        assert_eq!(owner("skhost", "sk"), None);
        assert_eq!(owner("sk12h3x", "sk"), None);
    }

    #[test]
    fn slots_map_to_their_subnet() {
        assert_eq!(slot_ip(0x1FF, 1), Ipv4Addr::new(10, 200, 7, 253));
        assert_eq!(slot_ip(0x1FF, 2), Ipv4Addr::new(10, 200, 7, 254));
        assert_eq!(slot_ip(SLOTS - 1, 2), Ipv4Addr::new(10, 200, 255, 254));
        assert_eq!(slot_of(slot_ip(0x1FF, 2)), Some(0x1FF));
        assert_eq!(slot_of(Ipv4Addr::new(10, 201, 0, 1)), None);
    }
}
