//! Where the machine's processor time went during a workload. The server, the load
//! generator's clients and the database (PostgreSQL's processes) share the cores, so a
//! rate alone cannot say which of them bounds it: `/proc` is read before and after each
//! workload and each share is given as processor time per request. A share that alone
//! would fill every core at the target rate shows the target is out of this machine's
//! reach without making that part cheaper.

/// Processor time counters at one moment, in the kernel's clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every core's ticks, busy or not.
    total: u64,
    /// Ticks no task ran.
    idle: u64,
    server: u64,
    clients: u64,
    database: u64,
}

/// What a workload cost, per request, in microseconds of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub server_us: f64,
    pub clients_us: f64,
    pub database_us: f64,
    /// The rest of the busy time: the kernel's interrupt work (loopback networking),
    /// processes that ended during the workload, anything else on the machine.
    pub other_us: f64,
    /// The share of the machine's time no task ran, 0 to 1.
    pub idle: f64,
}

impl Usage {
    pub fn busy_us(&self) -> f64 {
        self.server_us + self.clients_us + self.database_us + self.other_us
    }

    /// The rate at which these costs would keep every core busy: no higher rate is
    /// possible on this machine unless a request costs less.
    pub fn machine_ceiling(&self, cores: usize) -> f64 {
        per_second(self.busy_us(), cores)
    }

    /// The rate at which the database's share alone would keep every core busy.
    pub fn database_ceiling(&self, cores: usize) -> f64 {
        per_second(self.database_us, cores)
    }
}

fn per_second(us_per_request: f64, cores: usize) -> f64 {
    if us_per_request > 0.0 { cores as f64 * 1e6 / us_per_request } else { f64::INFINITY }
}

/// Reads the counters now; `server` is the server's process id, the load generator is
/// this process.
pub fn snapshot(server: u32) -> Snapshot {
    let (total, idle) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| machine_ticks(&s)).unwrap_or_default();
    let mut snap = Snapshot { total, idle, ..Snapshot::default() };
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return snap };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process may end between the listing and the read: it is simply not counted
        // here, and its time falls to "other".
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((comm, ticks)) = process_ticks(&stat) else { continue };
        if pid == server {
            snap.server += ticks;
        } else if pid == me {
            snap.clients += ticks;
        } else if comm == "postgres" {
            snap.database += ticks;
        }
    }
    snap
}

/// The usage between two snapshots, over `requests` requests.
pub fn usage(before: &Snapshot, after: &Snapshot, requests: usize) -> Usage {
    let total = after.total.saturating_sub(before.total);
    if total == 0 || requests == 0 {
        return Usage::default();
    }
    // A process's ticks are summed over its threads, so `USER_HZ` of them are one second
    // of one core, wherever they ran.
    let per_request = |ticks: u64| ticks as f64 / USER_HZ * 1e6 / requests as f64;
    let idle = after.idle.saturating_sub(before.idle);
    let server = after.server.saturating_sub(before.server);
    let clients = after.clients.saturating_sub(before.clients);
    let database = after.database.saturating_sub(before.database);
    let busy = total.saturating_sub(idle);
    let other = busy.saturating_sub(server + clients + database);
    Usage {
        server_us: per_request(server),
        clients_us: per_request(clients),
        database_us: per_request(database),
        other_us: per_request(other),
        idle: idle as f64 / total as f64,
    }
}

/// `/proc`'s clock ticks per second: fixed at 100 by Linux's interface to programs,
/// whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// All cores' ticks and the idle ones, from `/proc/stat`'s first line (`cpu user nice
/// system idle iowait irq softirq steal ...`; guest time is already inside user time).
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = values.try_into().ok()?;
    Some((user + nice + system + idle + iowait + irq + softirq + steal, idle + iowait))
}

/// A process's command name and its user plus system ticks (all its threads), from
/// `/proc/<pid>/stat`. The name is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn process_ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, then utime and stime.
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_counts_idle_and_iowait_as_idle_and_everything_as_total() {
        let stat = "cpu  100 5 50 800 20 3 7 1 9 0\ncpu0 50 2 25 400 10 1 3 0 4 0\n";
        assert_eq!(machine_ticks(stat), Some((986, 820)));
        assert_eq!(machine_ticks("intr 1 2 3\n"), None);
        assert_eq!(machine_ticks("cpu 1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn a_process_line_is_read_after_the_last_parenthesis_of_its_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 8 0 99 0 0";
        assert_eq!(process_ticks(stat), Some(("tokio (rt) x", 1801)));
        assert_eq!(process_ticks("7 (postgres) S 1 7 7 0 -1 0 0 0 0 0 10 5 0 0"), Some(("postgres", 15)));
        assert_eq!(process_ticks("7 (short) S 1 2"), None);
    }

    #[test]
    fn usage_divides_each_share_of_the_window_by_the_requests() {
        // Two cores for one second: 200 ticks, 20 of them idle; 1,000 requests.
        let before = Snapshot { total: 1_000, idle: 500, server: 10, clients: 20, database: 30 };
        let after = Snapshot { total: 1_200, idle: 520, server: 110, clients: 40, database: 80 };
        let u = usage(&before, &after, 1_000);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        // 100 ticks of the server are one core-second: 1,000 µs a request.
        assert!(close(u.server_us, 1_000.0), "{u:?}");
        assert!(close(u.clients_us, 200.0), "{u:?}");
        assert!(close(u.database_us, 500.0), "{u:?}");
        // 180 busy ticks, 170 of them named: 10 ticks are other.
        assert!(close(u.other_us, 100.0), "{u:?}");
        assert!(close(u.idle, 0.1), "{u:?}");
        assert!(close(u.busy_us(), 1_800.0), "{u:?}");
        assert!(close(u.machine_ceiling(2), 2e6 / 1_800.0), "{u:?}");
        assert!(close(u.database_ceiling(2), 4_000.0), "{u:?}");
    }

    #[test]
    fn an_empty_window_or_no_request_costs_nothing() {
        let s = Snapshot { total: 10, idle: 5, server: 1, clients: 1, database: 1 };
        assert_eq!(usage(&s, &s, 100), Usage::default());
        let later = Snapshot { total: 20, ..s };
        assert_eq!(usage(&s, &later, 0), Usage::default());
        assert!(Usage::default().database_ceiling(2).is_infinite());
    }

    #[test]
    fn this_process_is_seen_with_its_own_time() {
        let before = snapshot(0);
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = snapshot(0);
        assert!(after.total > before.total, "{before:?} {after:?}");
        assert!(
            after.clients > before.clients,
            "a busy 100 ms must show in this process's ticks: {before:?} {after:?}"
        );
    }
}
