//! Runs tests: one forked test process per test and filesystem (and one
//! child per case), a timeout, the kernel log checked after each, a summary
//! at the end.  See `child.rs` for the processes and when the cleanup
//! runs.

use crate::allow::AllowList;
use crate::child::{parent_res, run_test};
use crate::fs::{Fs, Mounted};
use crate::kconfig::KConfig;
use crate::kmsg::Kmsg;
use crate::ktap;
use crate::res::{Outcome, ResKind, Tally};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A feature probe: `Err(reason)` makes the test TCONF.  Once it has
/// passed, a TCONF from the test is reported as a TFAIL: the feature is
/// there, so not being able to test it is a failure.
pub type Probe = fn(&Ctx) -> Result<(), String>;

/// A test and what it needs.
pub struct Test {
    /// Unique name (the file it lives in).
    pub name: &'static str,
    /// One line: what it checks.
    pub doc: &'static str,
    pub needs_root: bool,
    /// `CONFIG_FOO`, `CONFIG_FOO=y`, `CONFIG_FOO=value`.
    pub needs_kconfigs: &'static [&'static str],
    /// Commands that must be in `PATH` (a missing one is TCONF naming it).
    /// The mkfs of each filesystem in `filesystems` is added by the runner.
    pub needs_cmds: &'static [&'static str],
    /// Run once per filesystem, each freshly made and mounted at `Ctx::mnt`.
    /// Empty: run once in a scratch directory on tmpfs.
    pub filesystems: &'static [Fs],
    /// Oldest kernel (major, minor) the test applies to.
    pub min_kver: Option<(u32, u32)>,
    /// Feature probe run in the test process first: `Err(reason)` is TCONF.
    pub probe: Option<Probe>,
    /// Runs after the probe, before the body (or the cases), in the test
    /// process.
    pub setup: Option<fn(&Ctx)>,
    /// Runs once setup (or the body) has started, whatever happens: at the
    /// end, after a TBROK, TCONF or panic in setup or the body, and after a
    /// timeout or a crash (then in a fresh process, see `child.rs`).
    /// A TBROK in the cleanup ends the cleanup.
    pub cleanup: Option<fn(&Ctx)>,
    /// Timeout of the body, or of each case.
    pub timeout: Duration,
    /// What the test guards, for a reader of this repository: see
    /// `selftests/README.md` ("Tags").
    pub tags: &'static [(&'static str, &'static str)],
    /// The body of a test without cases.
    pub run: fn(&Ctx),
    /// Number of cases; with `run_case` instead of `run`.
    pub tcnt: u32,
    /// The body of one case (0..tcnt), each in its own child: a TBROK ends
    /// that case only.  `fpc-tests name:N` runs case N alone.
    pub run_case: Option<fn(&Ctx, u32)>,
}

impl Test {
    /// Defaults for the optional fields: root, no kconfig, no filesystem, 60 s.
    pub const DEFAULT: Test = Test {
        name: "",
        doc: "",
        needs_root: true,
        needs_kconfigs: &[],
        needs_cmds: &[],
        filesystems: &[],
        min_kver: None,
        probe: None,
        setup: None,
        cleanup: None,
        timeout: Duration::from_secs(60),
        tags: &[],
        run: |_| {},
        tcnt: 0,
        run_case: None,
    };
}

/// What a running test body sees.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub fs: Option<Fs>,
    /// Mount point of the test filesystem, or the scratch directory.
    pub mnt: PathBuf,
    /// The test's timeout (of each case, for a test with cases), for tests
    /// that wait on their own helpers.
    pub timeout: Duration,
}

impl Ctx {
    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }
}

/// How TCONF counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// LTP's rule: a run that only TCONFed is skipped.
    Lenient,
    /// Every TCONF is a failure unless the allow-list has its reason.
    Strict,
}

#[derive(Debug)]
struct Opts {
    ktap: bool,
    list: bool,
    /// Test names, each with a case (`name:N`) or all cases.
    only: Vec<(String, Option<u32>)>,
    case: Option<u32>,
    fs: Option<Vec<String>>,
    timeout_mul: f64,
    mode: Mode,
    allow_file: Option<String>,
}

const USAGE: &str = "\
usage: fpc-tests [--list] [--ktap] [--strict|--lenient] [--allow-list FILE]
                 [--fs ext4,xfs,...] [--timeout-mul X] [--case N] [TEST[:N]...]
Runs every test (or the named ones; TEST:N or --case N: case N alone) and prints
'Summary: N passed, N failed, N broken, N skipped'.  Exit 0 when nothing failed or broke.
  --strict      every TCONF counts as failed, unless its reason is in the allow-list
  --lenient     a run that only TCONFed is skipped (the default; the number is printed)
  --allow-list  the strict mode's allow-list (default: the one built in)";

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        ktap: false,
        list: false,
        only: vec![],
        case: None,
        fs: None,
        timeout_mul: 1.0,
        mode: Mode::Lenient,
        allow_file: None,
    };
    let mut it = args.iter();
    let num = |what: &str, v: Option<&String>| -> Result<String, String> {
        v.cloned().ok_or_else(|| format!("{what} needs a value"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ktap" => o.ktap = true,
            "--list" => o.list = true,
            // The last of the two wins, so ARGS=--lenient overrides the
            // Makefile's --strict.
            "--strict" => o.mode = Mode::Strict,
            "--lenient" => o.mode = Mode::Lenient,
            "--allow-list" => o.allow_file = Some(num(a, it.next())?),
            "--fs" => {
                let v = num(a, it.next())?;
                o.fs = Some(v.split(',').map(str::to_string).collect());
            }
            "--timeout-mul" => {
                let v = num(a, it.next())?;
                o.timeout_mul = v
                    .parse()
                    .map_err(|_| format!("--timeout-mul: not a number: {v}"))?;
            }
            "--case" => {
                let v = num(a, it.next())?;
                o.case = Some(
                    v.parse()
                        .map_err(|_| format!("--case: not a number: {v}"))?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => match s.rsplit_once(':') {
                Some((n, c)) if c.parse::<u32>().is_ok() => {
                    o.only.push((n.to_string(), c.parse().ok()))
                }
                _ => o.only.push((s.to_string(), None)),
            },
        }
    }
    Ok(o)
}

fn kernel_version() -> Option<(u32, u32)> {
    let u = nix::sys::utsname::uname().ok()?;
    let r = u.release().to_string_lossy().into_owned();
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Is `cmd` an executable in `PATH` (or, with a '/', at that path)?
pub fn have_cmd(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        return exe(Path::new(cmd));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| exe(&d.join(cmd)))
}

/// One test on one filesystem (all its selected cases).
struct Variant<'a> {
    test: &'a Test,
    fs: Option<Fs>,
    cases: Vec<u32>,
}

impl Variant<'_> {
    fn name(&self) -> String {
        match self.fs {
            Some(f) => format!("{}:{}", self.test.name, f.name()),
            None => self.test.name.to_string(),
        }
    }
}

/// How one run counts, with the reason to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
}

/// The verdict of one run: LTP's rules ([`Tally::outcome`]), then, in
/// strict mode, a TCONF whose reason `allowed` does not accept makes the run
/// failed (also when other results passed).
pub fn verdict(tally: &Tally, mode: Mode, allowed: &dyn Fn(&str) -> bool) -> Verdict {
    let outcome = tally.outcome();
    let first_conf = tally.conf_reasons.first().cloned().unwrap_or_default();
    let v = |outcome, reason: String| Verdict { outcome, reason };
    match outcome {
        Outcome::Failed | Outcome::Broken => {
            return v(outcome, tally.first_problem.clone().unwrap_or_default())
        }
        Outcome::Passed | Outcome::Skipped => {}
    }
    if mode == Mode::Strict {
        if let Some(r) = tally.conf_reasons.iter().find(|r| !allowed(r)) {
            return v(
                Outcome::Failed,
                format!("TCONF in strict mode (not in the allow-list): {r}"),
            );
        }
        if outcome == Outcome::Skipped {
            return v(outcome, format!("{first_conf} (allow-listed)"));
        }
    }
    match outcome {
        Outcome::Skipped => v(outcome, first_conf),
        _ => v(outcome, String::new()),
    }
}

/// The counts of a whole run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub passed: u32,
    pub failed: u32,
    pub broken: u32,
    pub skipped: u32,
    /// Runs that reported a TCONF, and how many of them the allow-list
    /// accepted.
    pub tconf: u32,
    pub tconf_allowed: u32,
}

impl Totals {
    pub fn add(&mut self, tally: &Tally, v: &Verdict, allowed: &dyn Fn(&str) -> bool) {
        match v.outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Broken => self.broken += 1,
            Outcome::Skipped => self.skipped += 1,
        }
        if tally.conf > 0 {
            self.tconf += 1;
            if tally.conf_reasons.iter().all(|r| allowed(r)) {
                self.tconf_allowed += 1;
            }
        }
    }

    /// The line `.ci/run` parses: keep the format.
    pub fn summary(&self) -> String {
        format!(
            "Summary: {} passed, {} failed, {} broken, {} skipped",
            self.passed, self.failed, self.broken, self.skipped
        )
    }

    /// How many runs TCONFed, and what the mode made of them.
    pub fn tconf_line(&self, mode: Mode, runs: usize) -> String {
        match mode {
            Mode::Lenient => format!(
                "TCONF: {} of {runs} test runs (lenient: counted as skipped; --strict counts them \
                 as failed unless allow-listed)",
                self.tconf
            ),
            Mode::Strict => format!(
                "TCONF: {} of {runs} test runs, {} allow-listed (strict: the others count as failed)",
                self.tconf, self.tconf_allowed
            ),
        }
    }
}

/// Entry point for a test binary: run `tests` as the command line asks,
/// with no allow-list unless `--allow-list` names one.
pub fn main(tests: &[Test]) -> ExitCode {
    main_with_allow_list(tests, "", "")
}

/// Entry point with a built-in allow-list (`name` for messages, `text` its
/// contents, usually `include_str!` of the committed file).
pub fn main_with_allow_list(tests: &[Test], name: &str, text: &str) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(run_main(tests, name, text, &args))
}

fn check_table(tests: &[Test]) -> Result<(), String> {
    for (i, t) in tests.iter().enumerate() {
        if tests[..i].iter().any(|u| u.name == t.name) {
            return Err(format!("two tests named {}", t.name));
        }
        if (t.tcnt > 0) != t.run_case.is_some() {
            return Err(format!("{}: tcnt and run_case go together", t.name));
        }
    }
    Ok(())
}

fn load_allow_list(o: &Opts, tests: &[Test], name: &str, text: &str) -> Result<AllowList, String> {
    let (name, text) = match &o.allow_file {
        Some(f) => (
            f.as_str(),
            std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
        ),
        None => (name, text.to_string()),
    };
    let l = AllowList::parse(&text).map_err(|e| format!("allow-list {name}: {e}"))?;
    l.check_tests(tests)
        .map_err(|e| format!("allow-list {name}: {e}"))?;
    Ok(l)
}

fn list(tests: &[Test], sel: &dyn Fn(&Test) -> bool) {
    for t in tests.iter().filter(|t| sel(t)) {
        println!("{:28} {}", t.name, t.doc);
        let pad = "";
        if t.tcnt > 0 {
            println!(
                "{pad:28}   cases: {} ({}:0 .. {}:{})",
                t.tcnt,
                t.name,
                t.name,
                t.tcnt - 1
            );
        }
        if !t.needs_cmds.is_empty() {
            println!("{pad:28}   needs: {}", t.needs_cmds.join(" "));
        }
        for (k, v) in t.tags {
            println!("{pad:28}   {k}: {v}");
        }
    }
}

/// The whole run; returns the exit status (0 ok, 1 something failed or
/// broke, 2 usage or configuration error).
fn run_main(tests: &[Test], allow_name: &str, allow_text: &str, args: &[String]) -> u8 {
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fpc-tests: {e}");
            }
            eprintln!("{USAGE}");
            return 2;
        }
    };
    if o.case.is_some() && o.only.is_empty() {
        eprintln!("fpc-tests: --case needs a test name");
        return 2;
    }
    if let Err(e) = check_table(tests) {
        eprintln!("fpc-tests: test table: {e}");
        return 2;
    }
    let allow = match load_allow_list(&o, tests, allow_name, allow_text) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fpc-tests: {e}");
            return 2;
        }
    };
    // Which tests, and which of their cases (None: all).
    let mut chosen: Vec<(&Test, Option<BTreeSet<u32>>)> = Vec::new();
    for t in tests {
        let picks: Vec<Option<u32>> = o
            .only
            .iter()
            .filter(|(n, _)| n == t.name)
            .map(|(_, c)| c.or(o.case))
            .collect();
        if !o.only.is_empty() && picks.is_empty() {
            continue;
        }
        let cases = if picks.iter().any(Option::is_none) || (picks.is_empty() && o.case.is_none()) {
            None
        } else {
            Some(picks.iter().flatten().copied().chain(o.case).collect())
        };
        chosen.push((t, cases));
    }
    for (n, _) in &o.only {
        if !tests.iter().any(|t| t.name == n) {
            eprintln!("fpc-tests: no test named {n} (see --list)");
            return 2;
        }
    }
    for (t, cases) in &chosen {
        if let Some(c) = cases {
            if t.tcnt == 0 {
                eprintln!("fpc-tests: {} has no cases", t.name);
                return 2;
            }
            if let Some(bad) = c.iter().find(|&&i| i >= t.tcnt) {
                eprintln!(
                    "fpc-tests: {} has cases 0..{}, not {bad}",
                    t.name,
                    t.tcnt - 1
                );
                return 2;
            }
        }
    }
    if o.list {
        list(tests, &|t| chosen.iter().any(|(c, _)| c.name == t.name));
        return 0;
    }
    let mut variants = Vec::new();
    for (t, cases) in &chosen {
        let cases: Vec<u32> = match cases {
            Some(c) => c.iter().copied().collect(),
            None => (0..t.tcnt).collect(),
        };
        if t.filesystems.is_empty() {
            variants.push(Variant {
                test: t,
                fs: None,
                cases: cases.clone(),
            });
        }
        for &f in t.filesystems {
            if o.fs
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == f.name()))
            {
                variants.push(Variant {
                    test: t,
                    fs: Some(f),
                    cases: cases.clone(),
                });
            }
        }
    }
    run_variants(&variants, &o, &allow)
}

/// Run the variants and print results and the summary.
fn run_variants(variants: &[Variant<'_>], o: &Opts, allow: &AllowList) -> u8 {
    let root = nix::unistd::geteuid().is_root();
    let env = Env {
        root,
        kconfig: match KConfig::load() {
            Ok(k) => Some(k),
            Err(e) => {
                println!("fpc-tests: TINFO: {e:#}: kernel config requirements cannot be checked");
                None
            }
        },
        kver: kernel_version(),
    };
    if !root {
        println!("fpc-tests: TINFO: not root: the kernel log is not checked");
    }
    let scratch = match Scratch::new(root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fpc-tests: cannot set up a scratch area: {e:#}");
            return 1;
        }
    };
    if o.ktap {
        ktap::header(variants.len());
    }
    let start = Instant::now();
    let mut totals = Totals::default();
    let mut stuck = false;
    for (i, v) in variants.iter().enumerate() {
        let name = v.name();
        let t0 = Instant::now();
        let mut tally = Tally::default();
        if stuck {
            tally.add_msg(
                ResKind::Broken,
                "not run: an earlier test left a task stuck in the kernel",
            );
        } else {
            stuck = run_variant(v, o, &env, &scratch, &mut tally);
        }
        let secs = t0.elapsed().as_secs_f64();
        let fs = v.fs.map(Fs::name);
        let allowed = |r: &str| allow.find(v.test.name, fs, r).is_some();
        let vd = verdict(&tally, o.mode, &allowed);
        totals.add(&tally, &vd, &allowed);
        let sep = if vd.reason.is_empty() { "" } else { ": " };
        let line = format!(
            "{name}: {} ({secs:.1} s){sep}{}",
            outcome_word(vd.outcome),
            vd.reason
        );
        if o.ktap {
            println!("# {line}");
            ktap::result(i + 1, &name, vd.outcome, &vd.reason);
        } else {
            println!("{line}");
        }
    }
    drop(scratch);
    let pre = if o.ktap { "# " } else { "" };
    println!("{pre}{}", totals.tconf_line(o.mode, variants.len()));
    println!(
        "{pre}Wall time: {:.1} s for {} test runs",
        start.elapsed().as_secs_f64(),
        variants.len()
    );
    if o.ktap {
        println!(
            "{}",
            ktap::totals(totals.passed, totals.failed, totals.skipped, totals.broken)
        );
    }
    println!("{pre}{}", totals.summary());
    if totals.failed + totals.broken > 0 {
        1
    } else {
        0
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "PASSED",
        Outcome::Failed => "FAILED",
        Outcome::Broken => "BROKEN",
        Outcome::Skipped => "SKIPPED",
    }
}

/// What the runner knows about the machine.
struct Env {
    root: bool,
    kconfig: Option<KConfig>,
    kver: Option<(u32, u32)>,
}

/// Why a run cannot start here (TCONF), checked in the runner.
fn requirements(v: &Variant<'_>, env: &Env) -> Option<String> {
    let t = v.test;
    if t.needs_root && !env.root {
        return Some("needs root".into());
    }
    if let (Some(min), Some(have)) = (t.min_kver, env.kver) {
        if have < min {
            return Some(format!("needs kernel >= {}.{}", min.0, min.1));
        }
    }
    let mut reqs: Vec<&str> = t.needs_kconfigs.to_vec();
    if let Some(f) = v.fs {
        reqs.push(f.kconfig());
    }
    if let Some(kc) = &env.kconfig {
        let missing = kc.missing(&reqs);
        if !missing.is_empty() {
            return Some(format!("kernel config lacks {}", missing.join(" ")));
        }
    }
    let mut cmds: Vec<&str> = t.needs_cmds.to_vec();
    if let Some(f) = v.fs {
        cmds.extend(["mount", "umount"]);
        cmds.extend(f.mkfs_cmd());
    }
    let missing: Vec<&str> = cmds.into_iter().filter(|c| !have_cmd(c)).collect();
    if !missing.is_empty() {
        return Some(format!("needs command {} (not in PATH)", missing.join(" ")));
    }
    None
}

/// One run into `tally`.  Returns true if a task is stuck in the kernel.
fn run_variant(v: &Variant<'_>, o: &Opts, env: &Env, scratch: &Scratch, tally: &mut Tally) -> bool {
    let t = v.test;
    let name = v.name();
    let prefix = if o.ktap {
        format!("# {name}")
    } else {
        name.clone()
    };
    if let Some(why) = requirements(v, env) {
        parent_res(&prefix, ResKind::Conf, &why, tally);
        return false;
    }
    // The kernel-log check is part of every test: if it cannot be done, the
    // run is broken, not silently unchecked.
    let kmsg = if env.root {
        match Kmsg::open_at_end() {
            Ok(k) => Some(k),
            Err(e) => {
                parent_res(
                    &prefix,
                    ResKind::Broken,
                    &format!("kernel log check impossible: {e:#}"),
                    tally,
                );
                return false;
            }
        }
    } else {
        None
    };
    let mnt = scratch.dir.join("mnt");
    let mounted: Option<Mounted> = match v.fs {
        Some(f) => match f.mount(&scratch.dir, &mnt) {
            Ok(m) => Some(m),
            Err(e) => {
                parent_res(
                    &prefix,
                    ResKind::Broken,
                    &format!("{} setup: {e:#}", f.name()),
                    tally,
                );
                return false;
            }
        },
        None => {
            let _ = std::fs::remove_dir_all(&mnt);
            if let Err(e) = std::fs::create_dir_all(&mnt) {
                parent_res(
                    &prefix,
                    ResKind::Broken,
                    &format!("mkdir {}: {e}", mnt.display()),
                    tally,
                );
                return false;
            }
            None
        }
    };
    let ctx = Ctx {
        fs: v.fs,
        mnt,
        timeout: Duration::from_secs_f64(t.timeout.as_secs_f64() * o.timeout_mul),
    };
    let stuck = run_test(t, &ctx, &prefix, &v.cases, tally);
    if !stuck {
        drop(mounted);
    } else {
        std::mem::forget(mounted);
    }
    // Give deferred work (e.g. a lockdep report from an exiting task) a
    // moment to reach the log.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(k) = kmsg {
        match k.bad_lines() {
            Ok(lines) => {
                for l in lines {
                    parent_res(&prefix, ResKind::Fail, &format!("kernel log: {l}"), tally);
                }
            }
            Err(e) => parent_res(
                &prefix,
                ResKind::Broken,
                &format!("kernel log check failed: {e:#}"),
                tally,
            ),
        }
    }
    if tally.outcome() == Outcome::Broken && tally.broken + tally.warn == 0 {
        parent_res(&prefix, ResKind::Broken, "test reported no result", tally);
    }
    stuck
}

/// A private tmpfs for images and mount points, removed at the end.
struct Scratch {
    dir: PathBuf,
    mounted: bool,
}

impl Scratch {
    fn new(root: bool) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fpc-tests.{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut s = Scratch {
            dir,
            mounted: false,
        };
        if root {
            crate::fs::run(
                std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=2g", "fpc-scratch"])
                    .arg(&s.dir),
            )?;
            s.mounted = true;
        }
        Ok(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tbrok, tconf, tpass};

    fn ctx(timeout_ms: u64) -> Ctx {
        Ctx {
            fs: None,
            mnt: std::env::temp_dir(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn run(t: &Test, timeout_ms: u64, cases: &[u32]) -> (Tally, bool, Duration) {
        let mut tally = Tally::default();
        let t0 = Instant::now();
        let stuck = run_test(t, &ctx(timeout_ms), t.name, cases, &mut tally);
        (tally, stuck, t0.elapsed())
    }

    fn sleep_forever(_: &Ctx) {
        std::thread::sleep(Duration::from_secs(600));
    }
    fn cleanup_passes(_: &Ctx) {
        tpass!("cleanup ran");
    }

    /// A child that hangs without writing a result still hits its timeout
    /// (the runner once blocked in read(2) on the silent pipe).
    #[test]
    fn silent_child_times_out() {
        let t = Test {
            name: "silent",
            run: sleep_forever,
            ..Test::DEFAULT
        };
        let (tally, stuck, took) = run(&t, 300, &[]);
        assert!(!stuck, "a sleeping child must be reaped after SIGKILL");
        assert_eq!(tally.broken, 1, "the timeout is one TBROK: {tally:?}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }

    #[test]
    fn cleanup_after_tbrok_in_body() {
        let t = Test {
            name: "brok",
            run: |_| tbrok!("body breaks"),
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.broken, tally.pass), (1, 1), "{tally:?}");
        assert_eq!(tally.first_problem.as_deref(), Some("body breaks"));
    }

    #[test]
    fn cleanup_after_tbrok_or_panic_in_setup() {
        let t = Test {
            name: "setup_brok",
            setup: Some(|_| tbrok!("setup breaks")),
            run: |_| tpass!("body must not run"),
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.broken, tally.pass), (1, 1), "{tally:?}");
        let t = Test {
            name: "setup_panic",
            setup: Some(|_| panic!("setup panics")),
            run: |_| tpass!("body must not run"),
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.broken, tally.pass), (1, 1), "{tally:?}");
    }

    #[test]
    fn cleanup_once_after_normal_end() {
        let t = Test {
            name: "normal",
            setup: Some(|_| tpass!("setup ran")),
            run: |_| tpass!("body ran"),
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.pass, tally.broken), (3, 0), "{tally:?}");
    }

    #[test]
    fn cleanup_after_timeout_in_fresh_process() {
        let t = Test {
            name: "hang",
            run: sleep_forever,
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, stuck, took) = run(&t, 300, &[]);
        assert!(!stuck);
        assert_eq!((tally.broken, tally.pass), (1, 1), "{tally:?}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }

    #[test]
    fn cleanup_after_crash_in_fresh_process() {
        let t = Test {
            name: "crash",
            run: |_| {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            },
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.broken, tally.pass), (1, 1), "{tally:?}");
    }

    #[test]
    fn no_cleanup_when_probe_tconfs() {
        let t = Test {
            name: "probe_conf",
            probe: Some(|_| Err("feature absent".into())),
            run: |_| tpass!("body must not run"),
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.conf, tally.pass), (1, 0), "{tally:?}");
        assert_eq!(tally.conf_reasons, ["feature absent"]);
    }

    #[test]
    fn tconf_after_probe_is_tfail() {
        let t = Test {
            name: "probe_ok",
            probe: Some(|_| Ok(())),
            run: |_| tconf!("filesystem has no pre-content support"),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.conf, tally.fail), (0, 1), "{tally:?}");
        assert!(tally
            .first_problem
            .as_deref()
            .is_some_and(|m| m.starts_with("TCONF after the feature probe passed")));
        // Without a probe a TCONF stays a TCONF, with its reason.
        let t = Test {
            name: "no_probe",
            run: |_| tconf!("no /dev/pmem0"),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[]);
        assert_eq!((tally.conf, tally.fail), (1, 0), "{tally:?}");
        assert_eq!(tally.conf_reasons, ["no /dev/pmem0"]);
        assert_eq!(
            ktap::line(
                3,
                "no_probe",
                tally.outcome(),
                &verdict(&tally, Mode::Lenient, &|_| false).reason
            ),
            "ok 3 no_probe # SKIP no /dev/pmem0"
        );
    }

    fn three_cases(_: &Ctx, i: u32) {
        match i {
            1 => tbrok!("case 1 breaks"),
            2 => tpass!("case 2 passes"),
            _ => tpass!("case {i} passes"),
        }
    }

    #[test]
    fn case_tbrok_does_not_stop_the_next() {
        let t = Test {
            name: "cases",
            tcnt: 3,
            run_case: Some(three_cases),
            setup: Some(|_| tpass!("setup once")),
            cleanup: Some(cleanup_passes),
            ..Test::DEFAULT
        };
        let (tally, _, _) = run(&t, 10_000, &[0, 1, 2]);
        // setup + cases 0 and 2 + cleanup
        assert_eq!((tally.pass, tally.broken), (4, 1), "{tally:?}");
        // One case alone.
        let (tally, _, _) = run(&t, 10_000, &[2]);
        assert_eq!((tally.pass, tally.broken), (3, 0), "{tally:?}");
    }

    #[test]
    fn case_timeout_does_not_stop_the_next() {
        let t = Test {
            name: "case_hang",
            tcnt: 2,
            run_case: Some(|_, i| {
                if i == 0 {
                    std::thread::sleep(Duration::from_secs(600));
                }
                tpass!("case {i}");
            }),
            ..Test::DEFAULT
        };
        let (tally, stuck, _) = run(&t, 300, &[0, 1]);
        assert!(!stuck);
        assert_eq!((tally.pass, tally.broken), (1, 1), "{tally:?}");
    }

    fn tally(pass: u32, conf: &[&str]) -> Tally {
        let mut t = Tally::default();
        for _ in 0..pass {
            t.add_msg(ResKind::Pass, "");
        }
        for r in conf {
            t.add_msg(ResKind::Conf, r);
        }
        t
    }

    #[test]
    fn strict_and_lenient_counting() {
        let allowed = |r: &str| r.contains("no /dev/pmem0");
        let runs = [
            tally(2, &[]),
            tally(0, &["FAN_PRE_FAULT: EINVAL"]),
            tally(0, &["no /dev/pmem0"]),
            tally(1, &["FAN_PRE_FAULT: EINVAL"]),
            {
                let mut t = tally(1, &["FAN_PRE_FAULT: EINVAL"]);
                t.add_msg(ResKind::Broken, "timeout");
                t
            },
        ];
        let count = |mode| {
            let mut tot = Totals::default();
            let mut words = vec![];
            for t in &runs {
                let v = verdict(t, mode, &allowed);
                tot.add(t, &v, &allowed);
                words.push(v.outcome);
            }
            (tot, words)
        };
        let (lenient, words) = count(Mode::Lenient);
        use Outcome::*;
        assert_eq!(words, [Passed, Skipped, Skipped, Passed, Broken]);
        assert_eq!(
            lenient.summary(),
            "Summary: 2 passed, 0 failed, 1 broken, 2 skipped"
        );
        assert_eq!((lenient.tconf, lenient.tconf_allowed), (4, 1));
        assert!(lenient
            .tconf_line(Mode::Lenient, 5)
            .starts_with("TCONF: 4 of 5 test runs"));
        let (strict, words) = count(Mode::Strict);
        assert_eq!(words, [Passed, Failed, Skipped, Failed, Broken]);
        assert_eq!(
            strict.summary(),
            "Summary: 1 passed, 2 failed, 1 broken, 1 skipped"
        );
        let v = verdict(&runs[1], Mode::Strict, &allowed);
        assert_eq!(
            v.reason,
            "TCONF in strict mode (not in the allow-list): FAN_PRE_FAULT: EINVAL"
        );
        assert_eq!(ktap::line(2, "x", v.outcome, &v.reason), "not ok 2 x");
        let v = verdict(&runs[2], Mode::Strict, &allowed);
        assert_eq!(
            ktap::line(3, "x", v.outcome, &v.reason),
            "ok 3 x # SKIP no /dev/pmem0 (allow-listed)"
        );
        // The line .ci/run parses.
        let re = |s: &str| {
            let w: Vec<&str> = s.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            w.len() == 9
                && w[0] == "Summary:"
                && [1, 3, 5, 7].iter().all(|&i| w[i].parse::<u32>().is_ok())
                && w[2] == "passed"
                && w[4] == "failed"
                && w[6] == "broken"
                && w[8] == "skipped"
        };
        assert!(re(&strict.summary()) && re(&lenient.summary()));
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line() {
        let tests = [
            Test {
                name: "a",
                ..Test::DEFAULT
            },
            Test {
                name: "b",
                tcnt: 3,
                run_case: Some(|_, _| {}),
                ..Test::DEFAULT
            },
        ];
        let ok = "a no /dev/pmem0 # the VM has none\n";
        assert_eq!(run_main(&tests, "allow", ok, &args(&["--list"])), 0);
        assert_eq!(run_main(&tests, "allow", ok, &args(&["--list", "b:2"])), 0);
        assert_eq!(
            run_main(&tests, "allow", ok, &args(&["--list", "b", "--case", "1"])),
            0
        );
        // A malformed or stale allow-list stops the run before any test.
        for bad in ["a no /dev/pmem0\n", "c no /dev/pmem0 # gone\n"] {
            assert_eq!(run_main(&tests, "allow", bad, &args(&["--list"])), 2);
        }
        for bad in [
            &["--list", "c"][..],
            &["--list", "a:1"],
            &["--list", "b:3"],
            &["--case", "1"],
            &["--bogus"],
            &["--case", "x", "b"],
        ] {
            assert_eq!(run_main(&tests, "allow", ok, &args(bad)), 2, "{bad:?}");
        }
        let o = parse_args(&args(&["--strict", "x:2", "y", "--lenient"])).unwrap();
        assert_eq!(o.mode, Mode::Lenient);
        assert_eq!(
            o.only,
            [("x".to_string(), Some(2)), ("y".to_string(), None)]
        );
        assert_eq!(
            parse_args(&args(&["--lenient", "--strict"])).unwrap().mode,
            Mode::Strict
        );
    }

    #[test]
    fn commands_in_path() {
        assert!(have_cmd("sh"));
        assert!(have_cmd("/bin/sh"));
        assert!(!have_cmd("fpc-no-such-command"));
    }
}
