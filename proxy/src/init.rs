//! `sinew-proxy init`: transparent interception with iptables (IPv4 `nat` table).
//!
//! Installs four chains of our own — `SINEW_INBOUND`, `SINEW_IN_REDIRECT`, `SINEW_OUTPUT`,
//! `SINEW_REDIRECT` — plus one jump each from `PREROUTING` and `OUTPUT`, in the current network
//! namespace, with a single `iptables-restore --noflush` call. The restore is one transaction, so
//! no connection ever meets half a rule set, and rules of other owners are left alone.
//!
//! What it promises:
//! - Flags are validated once into [`Rules`] (a plan that does no I/O) before anything runs.
//! - Idempotent and convergent: running `init` again, with the same or other flags, leaves exactly
//!   one copy of every rule. Declaring a chain in the restore input flushes it, and the jumps from
//!   `PREROUTING`/`OUTPUT` are read first (`iptables -t nat -S`) and added only when missing.
//! - `--cleanup` removes exactly what `init` adds (jumps into `SINEW_*` chains from `PREROUTING`
//!   and `OUTPUT`, and the `SINEW_*` chains) and succeeds when nothing is installed.
//! - Works with iptables-nft (Debian 12's default) and iptables-legacy: it uses whichever binaries
//!   it is given or finds on `PATH`, and never mixes the two on its own.
//!
//! Only IPv4 TCP is intercepted; UDP (DNS included) and IPv6 pass untouched.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::Context as _;

/// Where the app's outgoing TCP is redirected (Istio's number; operators know it).
const DEFAULT_OUTBOUND_PORT: u16 = 15001;
/// Where incoming TCP for the app is redirected.
const DEFAULT_INBOUND_PORT: u16 = 15006;
/// The UID the proxy runs as; its own connections must never be intercepted.
const DEFAULT_PROXY_UID: u32 = 1337;

/// Proxy ports besides the outbound listener that peers and probes reach directly: admin,
/// Prometheus, health, and Envoy's metrics port (kept free so Istio-shaped scrape configs work).
/// Redirecting them to the inbound listener would turn a health check into a proxied request.
const PROXY_SERVICE_PORTS: [u16; 4] = [15000, 15020, 15021, 15090];

/// Every chain we own starts with this; `--cleanup` removes all of them.
const CHAIN_PREFIX: &str = "SINEW_";
const INBOUND: &str = "SINEW_INBOUND";
const IN_REDIRECT: &str = "SINEW_IN_REDIRECT";
const OUTPUT: &str = "SINEW_OUTPUT";
const REDIRECT: &str = "SINEW_REDIRECT";
const CHAINS: [&str; 4] = [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT];

/// The jumps into our chains, exactly as `iptables -S` prints them, so the listing can be compared
/// line by line. `-p tcp` keeps UDP and ICMP out of our chains entirely.
const JUMPS: [&str; 2] = [
    "-A PREROUTING -p tcp -j SINEW_INBOUND",
    "-A OUTPUT -p tcp -j SINEW_OUTPUT",
];
/// The built-in chains we add jumps to, and so the only ones `--cleanup` looks at.
const HOOK_CHAINS: [&str; 2] = ["PREROUTING", "OUTPUT"];

const FLAG_INBOUND_PORTS: &str = "--inbound-ports";
const FLAG_EXCLUDE_INBOUND_PORTS: &str = "--exclude-inbound-ports";
const FLAG_EXCLUDE_OUTBOUND_PORTS: &str = "--exclude-outbound-ports";
const FLAG_OUTBOUND_CIDRS: &str = "--outbound-cidrs";
const FLAG_EXCLUDE_OUTBOUND_CIDRS: &str = "--exclude-outbound-cidrs";

/// Install transparent-interception iptables rules (nat table, IPv4) in this network namespace.
///
/// Redirects the app's outgoing TCP to the proxy's outbound port and incoming TCP to its inbound
/// port, in one atomic iptables-restore. Safe to run again; --cleanup removes the rules.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Port of the proxy's outbound listener; the app's outgoing TCP is redirected here.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_OUTBOUND_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub outbound_port: u16,

    /// Port of the proxy's inbound listener; TCP arriving for the app is redirected here.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_INBOUND_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub inbound_port: u16,

    /// UID the proxy runs as. Its connections are never redirected (they would loop back into
    /// the proxy), except to its own pod address, which goes through the inbound side.
    #[arg(long, value_name = "UID", default_value_t = DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,

    /// GID whose connections are exempt like the proxy UID's [default: the proxy UID].
    #[arg(long, value_name = "GID")]
    pub proxy_gid: Option<u32>,

    /// Inbound ports redirected to the proxy: comma-separated (80,443), or `*` for all.
    /// An empty list redirects nothing.
    #[arg(long, value_name = "PORTS", default_value = "*")]
    pub inbound_ports: String,

    /// Inbound ports never redirected, comma-separated. The proxy's own ports (the outbound port,
    /// 15000, 15020, 15021, 15090) are always excluded so probes and scrapes reach it directly.
    #[arg(long, value_name = "PORTS")]
    pub exclude_inbound_ports: Option<String>,

    /// Outbound destination ports never redirected, comma-separated.
    #[arg(long, value_name = "PORTS")]
    pub exclude_outbound_ports: Option<String>,

    /// Outbound destinations redirected to the proxy: comma-separated IPv4 CIDRs
    /// (10.0.0.0/8,198.18.0.1), or `*` for all.
    #[arg(long, value_name = "CIDRS", default_value = "*")]
    pub outbound_cidrs: String,

    /// Outbound destinations never redirected: comma-separated IPv4 CIDRs.
    #[arg(long, value_name = "CIDRS")]
    pub exclude_outbound_cidrs: Option<String>,

    /// Print the iptables-restore input and exit without changing anything. Init prints the
    /// input for a namespace without our rules and needs no privileges; with --cleanup it reads
    /// the current rules (needs CAP_NET_ADMIN) and prints what would remove them.
    #[arg(long)]
    pub dry_run: bool,

    /// Remove the jumps and SINEW_ chains that init installs. Succeeds if none are installed.
    #[arg(long)]
    pub cleanup: bool,

    /// iptables-restore binary [default: --iptables with `-restore` appended, else
    /// `iptables-restore` on PATH]. Pass the nft or legacy variant to choose the backend.
    #[arg(long, value_name = "PATH")]
    pub iptables_restore: Option<PathBuf>,

    /// iptables binary, used to read the current rules [default: --iptables-restore without
    /// `-restore`, else `iptables` on PATH]. Must be the same variant as --iptables-restore.
    #[arg(long, value_name = "PATH")]
    pub iptables: Option<PathBuf>,
}

/// Why `init` could not plan or apply the rules. Every message names the flag or binary at fault.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid port '{value}' in {flag}: expected a number from 1 to 65535")]
    InvalidPort { flag: &'static str, value: String },

    #[error("empty entry in {flag}: write a comma-separated list without gaps, e.g. 80,443")]
    EmptyEntry { flag: &'static str },

    #[error("invalid IPv4 CIDR '{value}' in {flag}: expected e.g. 10.0.0.0/8 or 10.1.2.3")]
    InvalidCidr { flag: &'static str, value: String },

    #[error("'*' in {flag} means all and cannot be combined with other entries")]
    WildcardCombined { flag: &'static str },

    #[error("'*' is not allowed in {flag}: list what to exclude")]
    WildcardNotAllowed { flag: &'static str },

    #[error(
        "--inbound-port and --outbound-port are both {port}: the proxy needs two different listeners"
    )]
    SamePort { port: u16 },

    // Not a `#[source]`: the operator should see the OS error on the one line that gets printed.
    #[error(
        "could not run {binary}: {error}; install the `iptables` package \
         (Debian: apt-get install -y iptables) or pass {flag} PATH"
    )]
    Spawn {
        binary: String,
        flag: &'static str,
        error: io::Error,
    },

    #[error("{binary} failed ({status}): {stderr}{culprit}; {hint}")]
    Failed {
        binary: String,
        status: ExitStatus,
        stderr: String,
        /// The restore input line that iptables-restore reported, as ` (input line N: ...)`, or
        /// empty. iptables-legacy-restore says no more than "line 3 failed".
        culprit: String,
        hint: &'static str,
    },
}

/// Installs the interception rules, or removes them with `--cleanup`, and prints a one-line
/// summary to stderr. With `--dry-run` it prints the iptables-restore input to stdout instead.
pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    // Validate every flag first, also for --cleanup: a typo should fail the same way everywhere.
    let rules = Rules::try_from(args)?;
    let bins = Binaries::from_args(args);

    if args.cleanup {
        let state = bins.list_nat()?;
        let Some(input) = cleanup_input(&state) else {
            eprintln!("sinew-proxy init --cleanup: no SINEW_ rules installed, nothing to remove");
            return Ok(());
        };
        if args.dry_run {
            write_stdout(&input)?;
            eprintln!("sinew-proxy init --cleanup --dry-run: printed the removal, changed nothing");
            return Ok(());
        }
        bins.restore(&input)?;
        eprintln!(
            "sinew-proxy init --cleanup: removed {} jump(s) and {} SINEW_ chain(s) with {}",
            state.jumps.len(),
            state.chains.len(),
            bins.restore.display(),
        );
        return Ok(());
    }

    if args.dry_run {
        write_stdout(&rules.restore_input())?;
        eprintln!(
            "sinew-proxy init --dry-run: printed the iptables-restore input, changed nothing"
        );
        return Ok(());
    }

    let state = bins.list_nat()?;
    let plan = init_input(&rules, &state);
    bins.restore(&plan.input)?;
    eprintln!(
        "sinew-proxy init: TCP intercepted (outbound -> :{}, inbound -> :{}, uid {} / gid {} exempt) \
         with {}; {} jump(s) added, {} stale rule(s) and {} stale chain(s) removed",
        rules.outbound_port,
        rules.inbound_port,
        rules.proxy_uid,
        rules.proxy_gid,
        bins.restore.display(),
        plan.jumps_added,
        plan.jumps_removed,
        plan.chains_removed,
    );
    Ok(())
}

/// Unlike `print!`, reports a closed stdout (`init --dry-run | head`) as an error, not a panic.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the iptables-restore input to stdout")
}

/// A validated interception plan: which traffic goes to which proxy port. Cannot be invalid and
/// does no I/O; [`Rules::restore_input`] renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    outbound_port: u16,
    inbound_port: u16,
    proxy_uid: u32,
    proxy_gid: u32,
    inbound_ports: Selection<u16>,
    /// Always starts with the proxy's own ports, then the user's, without duplicates.
    exclude_inbound_ports: Vec<u16>,
    exclude_outbound_ports: Vec<u16>,
    outbound_cidrs: Selection<Ipv4Cidr>,
    exclude_outbound_cidrs: Vec<Ipv4Cidr>,
}

/// `*` (everything) or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selection<T> {
    All,
    Only(Vec<T>),
}

// === impl Rules ===

impl TryFrom<&InitArgs> for Rules {
    type Error = InitError;

    fn try_from(args: &InitArgs) -> Result<Self, InitError> {
        // clap enforces 1.. already; this guards callers that build InitArgs by hand.
        for (flag, port) in [
            ("--outbound-port", args.outbound_port),
            ("--inbound-port", args.inbound_port),
        ] {
            if port == 0 {
                return Err(InitError::InvalidPort {
                    flag,
                    value: port.to_string(),
                });
            }
        }
        if args.inbound_port == args.outbound_port {
            return Err(InitError::SamePort {
                port: args.inbound_port,
            });
        }

        let mut exclude_inbound_ports = vec![args.outbound_port];
        exclude_inbound_ports.extend(PROXY_SERVICE_PORTS);
        exclude_inbound_ports.sort_unstable();
        exclude_inbound_ports.extend(parse_ports(
            FLAG_EXCLUDE_INBOUND_PORTS,
            args.exclude_inbound_ports.as_deref().unwrap_or(""),
        )?);

        Ok(Self {
            outbound_port: args.outbound_port,
            inbound_port: args.inbound_port,
            proxy_uid: args.proxy_uid,
            proxy_gid: args.proxy_gid.unwrap_or(args.proxy_uid),
            inbound_ports: parse_selection(FLAG_INBOUND_PORTS, &args.inbound_ports, parse_port)?,
            exclude_inbound_ports: dedup(exclude_inbound_ports),
            exclude_outbound_ports: parse_ports(
                FLAG_EXCLUDE_OUTBOUND_PORTS,
                args.exclude_outbound_ports.as_deref().unwrap_or(""),
            )?,
            outbound_cidrs: parse_selection(FLAG_OUTBOUND_CIDRS, &args.outbound_cidrs, parse_cidr)?,
            exclude_outbound_cidrs: parse_list(
                FLAG_EXCLUDE_OUTBOUND_CIDRS,
                args.exclude_outbound_cidrs.as_deref().unwrap_or(""),
                parse_cidr,
            )?,
        })
    }
}

impl Rules {
    /// The complete iptables-restore input (for `--noflush`) for a namespace that has none of our
    /// rules yet: chain declarations, chain contents, both jumps. `init` sends this text minus the
    /// jumps that already exist; `--dry-run` prints it.
    pub fn restore_input(&self) -> String {
        init_input(self, &NatState::default()).input
    }

    /// The rules of our four chains, in order, written the way `iptables -S` prints them so that
    /// what we send and what `iptables-save` shows can be compared line by line.
    fn chain_rules(&self) -> Vec<String> {
        let mut rules = Vec::new();
        let mut add = |chain: &str, spec: String| rules.push(format!("-A {chain} {spec}"));

        // Inbound (PREROUTING: TCP arriving from the network for this pod).
        match &self.inbound_ports {
            Selection::All => {
                // The proxy's own ports and the user's exclusions go straight to their listeners.
                for port in &self.exclude_inbound_ports {
                    add(INBOUND, format!("-p tcp -m tcp --dport {port} -j RETURN"));
                }
                add(INBOUND, format!("-p tcp -j {IN_REDIRECT}"));
            }
            Selection::Only(ports) => {
                // Unlisted ports fall off the chain's end untouched, so exclusions only need to
                // remove ports from the list; excluded wins, so the proxy's ports stay direct.
                for port in ports
                    .iter()
                    .filter(|p| !self.exclude_inbound_ports.contains(p))
                {
                    add(
                        INBOUND,
                        format!("-p tcp -m tcp --dport {port} -j {IN_REDIRECT}"),
                    );
                }
            }
        }
        add(
            IN_REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {}", self.inbound_port),
        );

        // Outbound (OUTPUT: TCP this pod opens). Order matters; the first match decides.
        // The inbound proxy delivering to the app on the pod IP, from its own source address:
        // without this the next rule would send that connection back to the inbound listener.
        add(
            OUTPUT,
            format!("-s {}/32 -o lo -j RETURN", crate::inbound::APP_SOURCE),
        );
        for owner in self.owner_matches() {
            // The proxy dialing its own pod IP (a service whose endpoint is this very pod) leaves
            // over `lo` and never passes PREROUTING, because NAT is decided once per connection in
            // OUTPUT. Send it through the inbound rules so it is treated exactly like the same
            // connection from another pod: the inbound proxy terminates the mTLS it carries.
            // Loopback addresses are excluded: that is the proxy talking to itself.
            add(
                OUTPUT,
                format!("! -d 127.0.0.0/8 -o lo {owner} -j {INBOUND}"),
            );
        }
        // Everything else on loopback stays local: the app talking to itself (127.0.0.0/8 or its
        // own pod IP), the app reaching the proxy's admin port, the proxy delivering to the app.
        add(OUTPUT, "-o lo -j RETURN".to_owned());
        for owner in self.owner_matches() {
            // The proxy's own upstream connections: redirecting them would loop into the proxy.
            add(OUTPUT, format!("{owner} -j RETURN"));
        }
        for port in &self.exclude_outbound_ports {
            add(OUTPUT, format!("-p tcp -m tcp --dport {port} -j RETURN"));
        }
        // Exclusions come before inclusions so a hole can be cut out of an included range.
        for cidr in &self.exclude_outbound_cidrs {
            add(OUTPUT, format!("-d {cidr} -j RETURN"));
        }
        match &self.outbound_cidrs {
            Selection::All => add(OUTPUT, format!("-j {REDIRECT}")),
            Selection::Only(cidrs) => {
                // Destinations outside the list fall off the chain's end and leave unchanged.
                for cidr in cidrs {
                    add(OUTPUT, format!("-d {cidr} -j {REDIRECT}"));
                }
            }
        }
        add(
            REDIRECT,
            format!("-p tcp -j REDIRECT --to-ports {}", self.outbound_port),
        );
        rules
    }

    /// The owner matches that identify the proxy. UID and GID are separate rules because one
    /// rule with both would require both (AND), and either one is meant to exempt (OR).
    fn owner_matches(&self) -> [String; 2] {
        [
            format!("-m owner --uid-owner {}", self.proxy_uid),
            format!("-m owner --gid-owner {}", self.proxy_gid),
        ]
    }
}

// === restore inputs ===

/// What is installed now: our chains, and the rules in `PREROUTING`/`OUTPUT` that jump into them.
#[derive(Debug, Default, PartialEq, Eq)]
struct NatState {
    /// Chains whose name starts with `SINEW_`.
    chains: Vec<String>,
    /// Whole `-A ...` lines as `iptables -S` prints them, duplicates included.
    jumps: Vec<String>,
}

impl NatState {
    /// Reads `iptables -t nat -S` output. Lines we do not recognise (policies, other owners'
    /// rules, iptables-nft's "legacy tables present" warning) are ignored.
    fn parse(listing: &str) -> Self {
        let mut state = Self::default();
        for line in listing.lines().map(str::trim) {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            match tokens.as_slice() {
                ["-N", chain] if chain.starts_with(CHAIN_PREFIX) => {
                    state.chains.push((*chain).to_owned());
                }
                ["-A", chain, rest @ ..] if HOOK_CHAINS.contains(chain) => {
                    // `-g` (goto) counts too: it hands the packet to our chain all the same.
                    let targets_ours = rest.windows(2).any(|pair| {
                        matches!(pair[0], "-j" | "-g") && pair[1].starts_with(CHAIN_PREFIX)
                    });
                    if targets_ours {
                        state.jumps.push(line.to_owned());
                    }
                }
                _ => {}
            }
        }
        state
    }
}

/// An init restore input and what it changes.
#[derive(Debug)]
struct InitPlan {
    input: String,
    jumps_added: usize,
    jumps_removed: usize,
    chains_removed: usize,
}

/// The restore input that moves `state` to exactly `rules`. Declaring our chains flushes them
/// (also under `--noflush`), so their contents are rewritten rather than appended to; jumps are
/// kept once, extra copies and jumps into chains we no longer use are deleted, and chains of ours
/// that this version does not declare (left by an older one) are removed.
fn init_input(rules: &Rules, state: &NatState) -> InitPlan {
    let mut out = String::from("*nat\n");
    for chain in CHAINS {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }

    let mut kept: HashSet<&str> = HashSet::new();
    let mut jumps_removed = 0;
    for jump in &state.jumps {
        if JUMPS.contains(&jump.as_str()) && kept.insert(jump.as_str()) {
            continue;
        }
        out.push_str(&delete_line(jump));
        jumps_removed += 1;
    }

    let stale: Vec<&String> = state
        .chains
        .iter()
        .filter(|chain| !CHAINS.contains(&chain.as_str()))
        .collect();
    push_remove_chains(&mut out, &stale);

    for rule in rules.chain_rules() {
        out.push_str(&rule);
        out.push('\n');
    }
    let mut jumps_added = 0;
    for jump in JUMPS.iter().filter(|jump| !kept.contains(*jump)) {
        out.push_str(jump);
        out.push('\n');
        jumps_added += 1;
    }
    out.push_str("COMMIT\n");

    InitPlan {
        input: out,
        jumps_added,
        jumps_removed,
        chains_removed: stale.len(),
    }
}

/// The restore input that removes everything of ours in `state`, or `None` if nothing is there.
fn cleanup_input(state: &NatState) -> Option<String> {
    if state.chains.is_empty() && state.jumps.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    // Jumps first: a chain that is still referenced cannot be deleted.
    for jump in &state.jumps {
        out.push_str(&delete_line(jump));
    }
    let chains: Vec<&String> = state.chains.iter().collect();
    push_remove_chains(&mut out, &chains);
    out.push_str("COMMIT\n");
    Some(out)
}

/// Flushes all the chains before deleting any, because our chains jump into each other and a
/// referenced chain cannot be deleted.
fn push_remove_chains(out: &mut String, chains: &[&String]) {
    for chain in chains {
        out.push_str(&format!("-F {chain}\n"));
    }
    for chain in chains {
        out.push_str(&format!("-X {chain}\n"));
    }
}

/// `-A CHAIN spec` → `-D CHAIN spec`: deletes one copy of the rule by its exact specification.
fn delete_line(append_line: &str) -> String {
    let spec = append_line.strip_prefix("-A ").unwrap_or(append_line);
    format!("-D {spec}\n")
}

// === impl Binaries ===

/// The iptables pair we run. Both must be the same variant (nft or legacy): reading the rules
/// from one backend and writing them with the other would install duplicate jumps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binaries {
    iptables: PathBuf,
    restore: PathBuf,
}

impl Binaries {
    /// When only one binary is given, the other is its sibling by the naming every iptables
    /// package uses (`iptables-legacy` / `iptables-legacy-restore`), so choosing a variant once
    /// is enough.
    fn from_args(args: &InitArgs) -> Self {
        match (&args.iptables, &args.iptables_restore) {
            (Some(iptables), Some(restore)) => Self {
                iptables: iptables.clone(),
                restore: restore.clone(),
            },
            (Some(iptables), None) => Self {
                iptables: iptables.clone(),
                restore: renamed(iptables, |name| Some(format!("{name}-restore")))
                    .unwrap_or_else(|| "iptables-restore".into()),
            },
            (None, Some(restore)) => Self {
                iptables: renamed(restore, |name| {
                    name.strip_suffix("-restore").map(str::to_owned)
                })
                .unwrap_or_else(|| "iptables".into()),
                restore: restore.clone(),
            },
            (None, None) => Self {
                iptables: "iptables".into(),
                restore: "iptables-restore".into(),
            },
        }
    }

    /// Lists the nat table. `-w` waits for the xtables lock that iptables-legacy uses to
    /// serialise writers; iptables-nft accepts and ignores it.
    fn list_nat(&self) -> Result<NatState, InitError> {
        let output = Command::new(&self.iptables)
            .args(["-w", "-t", "nat", "-S"])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| spawn_error(&self.iptables, "--iptables", error))?;
        if !output.status.success() {
            return Err(failed(&self.iptables, output.status, &output.stderr, ""));
        }
        Ok(NatState::parse(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Applies `input` in one `iptables-restore --noflush` transaction: all of it or nothing.
    fn restore(&self, input: &str) -> Result<(), InitError> {
        tracing::debug!(binary = %self.restore.display(), %input, "applying iptables-restore input");
        let spawn_err = |error| spawn_error(&self.restore, "--iptables-restore", error);
        let mut child = Command::new(&self.restore)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        // Dropping stdin at the end of this block sends EOF, which is when restore commits.
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(input.as_bytes()),
            None => Ok(()),
        };
        let output = child.wait_with_output().map_err(spawn_err)?;
        // A restore that rejects its input may exit before reading all of it; its stderr then
        // explains more than our broken pipe, so the exit status is checked first.
        if !output.status.success() {
            return Err(failed(&self.restore, output.status, &output.stderr, input));
        }
        written.map_err(spawn_err)
    }
}

/// `path` with its file name passed through `rename`; `None` if either has no usable name.
fn renamed(path: &Path, rename: impl FnOnce(&str) -> Option<String>) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    Some(path.with_file_name(rename(name)?))
}

fn spawn_error(binary: &Path, flag: &'static str, error: io::Error) -> InitError {
    InitError::Spawn {
        binary: binary.display().to_string(),
        flag,
        error,
    }
}

/// `input` is what was fed on stdin (empty for commands without input).
fn failed(binary: &Path, status: ExitStatus, stderr: &[u8], input: &str) -> InitError {
    let stderr = String::from_utf8_lossy(stderr);
    // One line: the error is printed once, and iptables spreads one problem over several lines
    // (nft ends a header line with ':' and puts the detail on the next).
    let mut one_line = String::new();
    for line in stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if !one_line.is_empty() {
            one_line.push_str(if one_line.ends_with(':') { " " } else { "; " });
        }
        one_line.push_str(line);
    }
    let culprit = failed_line(&one_line, input);
    InitError::Failed {
        binary: binary.display().to_string(),
        status,
        hint: failure_hint(&one_line, culprit.unwrap_or("")),
        culprit: culprit
            .map(|line| format!(" (input: `{line}`)"))
            .unwrap_or_default(),
        stderr: if one_line.is_empty() {
            "(no output)".to_owned()
        } else {
            one_line
        },
    }
}

/// The input line named by iptables-restore's "line N" (1-based), if any.
fn failed_line<'a>(stderr: &str, input: &'a str) -> Option<&'a str> {
    let (_, after) = stderr.split_once("line ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let number: usize = digits.parse().ok()?;
    input.lines().nth(number.checked_sub(1)?)
}

fn failure_hint(stderr: &str, culprit: &str) -> &'static str {
    if stderr.contains("Permission denied") || stderr.contains("must be root") {
        "run it as root or with CAP_NET_ADMIN in the pod's network namespace"
    } else if culprit.starts_with("-X ") {
        // A chain is deletable only when nothing jumps to it, and we only remove jumps from
        // PREROUTING and OUTPUT, the ones we add.
        "a rule outside PREROUTING/OUTPUT still jumps to this SINEW_ chain; delete that rule \
         (iptables -t nat -S | grep SINEW_) and run again"
    } else {
        "check that the `iptables` package is installed (Debian: apt-get install -y iptables), \
         that the kernel has a nat table (nf_tables or iptable_nat), and that --iptables and \
         --iptables-restore are the same variant (nft or legacy)"
    }
}

// === parsing ===

/// An IPv4 network, normalised to its network address (10.1.2.3/8 → 10.0.0.0/8), which is how
/// iptables stores and prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A bare address means that one host (/32).
fn parse_cidr(flag: &'static str, item: &str) -> Result<Ipv4Cidr, InitError> {
    let invalid = || InitError::InvalidCidr {
        flag,
        value: item.to_owned(),
    };
    let (addr, prefix) = match item.split_once('/') {
        Some((addr, prefix)) => (
            addr,
            parse_digits::<u8>(prefix)
                .filter(|prefix| *prefix <= 32)
                .ok_or_else(invalid)?,
        ),
        None => (item, 32),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ok(Ipv4Cidr {
        network: Ipv4Addr::from(u32::from(addr) & mask),
        prefix,
    })
}

fn parse_port(flag: &'static str, item: &str) -> Result<u16, InitError> {
    parse_digits::<u16>(item)
        .filter(|port| *port != 0)
        .ok_or_else(|| InitError::InvalidPort {
            flag,
            value: item.to_owned(),
        })
}

fn parse_ports(flag: &'static str, raw: &str) -> Result<Vec<u16>, InitError> {
    parse_list(flag, raw, parse_port)
}

/// Digits only: `str::parse` would also take `+80`, which no operator means.
fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A comma-separated list; whitespace around entries is ignored, an empty string is an empty
/// list, and duplicates are dropped so each rule is generated once.
fn parse_list<T: PartialEq>(
    flag: &'static str,
    raw: &str,
    parse: fn(&'static str, &str) -> Result<T, InitError>,
) -> Result<Vec<T>, InitError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let items = raw
        .split(',')
        .map(|item| match item.trim() {
            "" => Err(InitError::EmptyEntry { flag }),
            "*" => Err(InitError::WildcardNotAllowed { flag }),
            item => parse(flag, item),
        })
        .collect::<Result<Vec<T>, InitError>>()?;
    Ok(dedup(items))
}

/// Like [`parse_list`], but a lone `*` selects everything.
fn parse_selection<T: PartialEq>(
    flag: &'static str,
    raw: &str,
    parse: fn(&'static str, &str) -> Result<T, InitError>,
) -> Result<Selection<T>, InitError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(Selection::All);
    }
    match parse_list(flag, raw, parse) {
        Err(InitError::WildcardNotAllowed { flag }) => Err(InitError::WildcardCombined { flag }),
        other => other.map(Selection::Only),
    }
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut unique = Vec::with_capacity(items.len());
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InitArgs,
    }

    fn args(flags: &[&str]) -> InitArgs {
        Cli::try_parse_from(std::iter::once("init").chain(flags.iter().copied()))
            .expect("test flags parse")
            .args
    }

    fn rules(flags: &[&str]) -> Rules {
        Rules::try_from(&args(flags)).expect("test flags are valid")
    }

    fn error(flags: &[&str]) -> String {
        Rules::try_from(&args(flags))
            .expect_err("flags should be rejected")
            .to_string()
    }

    /// The rules of one chain, without the `-A CHAIN ` prefix.
    fn chain(rules: &Rules, chain: &str) -> Vec<String> {
        let prefix = format!("-A {chain} ");
        rules
            .chain_rules()
            .iter()
            .filter_map(|rule| rule.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    const DEFAULT_INPUT: &str = "\
*nat
:SINEW_INBOUND - [0:0]
:SINEW_IN_REDIRECT - [0:0]
:SINEW_OUTPUT - [0:0]
:SINEW_REDIRECT - [0:0]
-A SINEW_INBOUND -p tcp -m tcp --dport 15000 -j RETURN
-A SINEW_INBOUND -p tcp -m tcp --dport 15001 -j RETURN
-A SINEW_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
-A SINEW_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
-A SINEW_INBOUND -p tcp -m tcp --dport 15090 -j RETURN
-A SINEW_INBOUND -p tcp -j SINEW_IN_REDIRECT
-A SINEW_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A SINEW_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A SINEW_OUTPUT ! -d 127.0.0.0/8 -o lo -m owner --uid-owner 1337 -j SINEW_INBOUND
-A SINEW_OUTPUT ! -d 127.0.0.0/8 -o lo -m owner --gid-owner 1337 -j SINEW_INBOUND
-A SINEW_OUTPUT -o lo -j RETURN
-A SINEW_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A SINEW_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A SINEW_OUTPUT -j SINEW_REDIRECT
-A SINEW_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PREROUTING -p tcp -j SINEW_INBOUND
-A OUTPUT -p tcp -j SINEW_OUTPUT
COMMIT
";

    #[test]
    fn defaults_render_the_documented_restore_input() {
        assert_eq!(rules(&[]).restore_input(), DEFAULT_INPUT);
    }

    #[test]
    fn dry_run_prints_without_running_iptables() {
        // Binaries that do not exist prove nothing is executed.
        let args = args(&[
            "--dry-run",
            "--iptables",
            "/nonexistent/iptables",
            "--iptables-restore",
            "/nonexistent/iptables-restore",
        ]);
        run(&args).expect("dry run needs no iptables");
    }

    #[test]
    fn custom_ports_and_owner_change_redirects_and_exemptions() {
        let rules = rules(&[
            "--outbound-port",
            "16001",
            "--inbound-port",
            "16006",
            "--proxy-uid",
            "2000",
            "--proxy-gid",
            "3000",
        ]);
        assert_eq!(
            chain(&rules, REDIRECT),
            ["-p tcp -j REDIRECT --to-ports 16001"]
        );
        assert_eq!(
            chain(&rules, IN_REDIRECT),
            ["-p tcp -j REDIRECT --to-ports 16006"]
        );
        // The configured outbound listener, not 15001, is the one kept off inbound redirection.
        assert_eq!(
            chain(&rules, INBOUND)[..5],
            [15000, 15020, 15021, 15090, 16001]
                .map(|p| format!("-p tcp -m tcp --dport {p} -j RETURN"))
        );
        assert_eq!(
            chain(&rules, OUTPUT),
            [
                "-s 127.0.0.6/32 -o lo -j RETURN",
                "! -d 127.0.0.0/8 -o lo -m owner --uid-owner 2000 -j SINEW_INBOUND",
                "! -d 127.0.0.0/8 -o lo -m owner --gid-owner 3000 -j SINEW_INBOUND",
                "-o lo -j RETURN",
                "-m owner --uid-owner 2000 -j RETURN",
                "-m owner --gid-owner 3000 -j RETURN",
                "-j SINEW_REDIRECT",
            ]
        );
    }

    #[test]
    fn proxy_gid_defaults_to_proxy_uid() {
        let rules = rules(&["--proxy-uid", "4242"]);
        assert!(chain(&rules, OUTPUT).contains(&"-m owner --gid-owner 4242 -j RETURN".to_owned()));
    }

    #[test]
    fn exclude_inbound_ports_return_before_the_catch_all() {
        let rules = rules(&["--exclude-inbound-ports", "22, 8080,15000,22"]);
        assert_eq!(
            chain(&rules, INBOUND),
            [
                "-p tcp -m tcp --dport 15000 -j RETURN",
                "-p tcp -m tcp --dport 15001 -j RETURN",
                "-p tcp -m tcp --dport 15020 -j RETURN",
                "-p tcp -m tcp --dport 15021 -j RETURN",
                "-p tcp -m tcp --dport 15090 -j RETURN",
                "-p tcp -m tcp --dport 22 -j RETURN",
                "-p tcp -m tcp --dport 8080 -j RETURN",
                "-p tcp -j SINEW_IN_REDIRECT",
            ]
        );
    }

    #[test]
    fn inbound_ports_list_redirects_only_listed_ports_minus_exclusions() {
        let rules = rules(&[
            "--inbound-ports",
            "9080,8080,15020,9090",
            "--exclude-inbound-ports",
            "9090",
        ]);
        assert_eq!(
            chain(&rules, INBOUND),
            [
                "-p tcp -m tcp --dport 9080 -j SINEW_IN_REDIRECT",
                "-p tcp -m tcp --dport 8080 -j SINEW_IN_REDIRECT",
            ]
        );
    }

    #[test]
    fn empty_inbound_ports_redirect_nothing_inbound() {
        let rules = rules(&["--inbound-ports", ""]);
        assert!(chain(&rules, INBOUND).is_empty());
        // Outbound is unaffected.
        assert_eq!(
            chain(&rules, OUTPUT).last().map(String::as_str),
            Some("-j SINEW_REDIRECT")
        );
    }

    #[test]
    fn exclude_outbound_ports_return_after_the_owner_rules() {
        let rules = rules(&["--exclude-outbound-ports", "3306,5432"]);
        assert_eq!(
            chain(&rules, OUTPUT)[6..],
            [
                "-p tcp -m tcp --dport 3306 -j RETURN",
                "-p tcp -m tcp --dport 5432 -j RETURN",
                "-j SINEW_REDIRECT",
            ]
        );
    }

    #[test]
    fn outbound_cidrs_redirect_only_listed_destinations() {
        let rules = rules(&["--outbound-cidrs", "10.96.0.0/12,198.18.0.7"]);
        assert_eq!(
            chain(&rules, OUTPUT)[6..],
            [
                "-d 10.96.0.0/12 -j SINEW_REDIRECT",
                "-d 198.18.0.7/32 -j SINEW_REDIRECT",
            ]
        );
    }

    #[test]
    fn exclude_outbound_cidrs_cut_holes_before_the_redirect() {
        let rules = rules(&[
            "--exclude-outbound-cidrs",
            "10.1.2.3/8,169.254.169.254",
            "--outbound-cidrs",
            "10.0.0.0/8",
        ]);
        assert_eq!(
            chain(&rules, OUTPUT)[6..],
            [
                "-d 10.0.0.0/8 -j RETURN",
                "-d 169.254.169.254/32 -j RETURN",
                "-d 10.0.0.0/8 -j SINEW_REDIRECT",
            ]
        );
    }

    #[test]
    fn invalid_ports_are_rejected_with_the_flag_name() {
        assert_eq!(
            error(&["--exclude-inbound-ports", "80,abc"]),
            "invalid port 'abc' in --exclude-inbound-ports: expected a number from 1 to 65535"
        );
        for bad in ["0", "65536", "+80", "-1", "80:90"] {
            // `--flag=value` so clap does not take `-1` for a flag.
            assert_eq!(
                error(&[&format!("--exclude-outbound-ports={bad}")]),
                format!(
                    "invalid port '{bad}' in --exclude-outbound-ports: expected a number from 1 to 65535"
                )
            );
        }
        assert!(
            error(&["--inbound-ports", "80,x"]).starts_with("invalid port 'x' in --inbound-ports")
        );
    }

    #[test]
    fn invalid_cidrs_are_rejected_with_the_flag_name() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/",
            "example.com",
            "::1/128",
        ] {
            assert_eq!(
                error(&["--exclude-outbound-cidrs", bad]),
                format!(
                    "invalid IPv4 CIDR '{bad}' in --exclude-outbound-cidrs: expected e.g. 10.0.0.0/8 or 10.1.2.3"
                )
            );
        }
        assert!(
            error(&["--outbound-cidrs", "10.0.0.0/8,bad"]).contains("'bad' in --outbound-cidrs")
        );
    }

    #[test]
    fn list_syntax_errors_are_explained() {
        assert_eq!(
            error(&["--exclude-inbound-ports", "80,,443"]),
            "empty entry in --exclude-inbound-ports: write a comma-separated list without gaps, e.g. 80,443"
        );
        assert_eq!(
            error(&["--inbound-ports", "*,80"]),
            "'*' in --inbound-ports means all and cannot be combined with other entries"
        );
        assert_eq!(
            error(&["--exclude-outbound-cidrs", "*"]),
            "'*' is not allowed in --exclude-outbound-cidrs: list what to exclude"
        );
    }

    #[test]
    fn listener_ports_must_differ_and_be_nonzero() {
        assert_eq!(
            error(&["--inbound-port", "15001"]),
            "--inbound-port and --outbound-port are both 15001: the proxy needs two different listeners"
        );
        // clap rejects 0 on the command line; a hand-built InitArgs hits our own check.
        assert!(Cli::try_parse_from(["init", "--outbound-port", "0"]).is_err());
        let mut hand_built = args(&[]);
        hand_built.inbound_port = 0;
        assert_eq!(
            Rules::try_from(&hand_built).map_err(|e| e.to_string()),
            Err("invalid port '0' in --inbound-port: expected a number from 1 to 65535".to_owned())
        );
    }

    const INSTALLED_LISTING: &str = "\
-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N KUBE-SOMETHING
-N SINEW_INBOUND
-N SINEW_IN_REDIRECT
-N SINEW_OUTPUT
-N SINEW_REDIRECT
-A PREROUTING -p tcp -j SINEW_INBOUND
-A PREROUTING -j KUBE-SOMETHING
-A OUTPUT -p tcp -j SINEW_OUTPUT
-A SINEW_INBOUND -p tcp -j SINEW_IN_REDIRECT
-A SINEW_OUTPUT -j SINEW_REDIRECT
";

    #[test]
    fn listing_yields_our_chains_and_jumps_only() {
        let state = NatState::parse(INSTALLED_LISTING);
        assert_eq!(state.chains, CHAINS.map(str::to_owned));
        assert_eq!(state.jumps, JUMPS.map(str::to_owned));
    }

    #[test]
    fn reinstall_keeps_existing_jumps_and_rewrites_chains() {
        let plan = init_input(&rules(&[]), &NatState::parse(INSTALLED_LISTING));
        let without_jumps = DEFAULT_INPUT
            .lines()
            .filter(|line| !JUMPS.contains(line))
            .map(|line| format!("{line}\n"))
            .collect::<String>();
        assert_eq!(plan.input, without_jumps);
        assert_eq!(
            (plan.jumps_added, plan.jumps_removed, plan.chains_removed),
            (0, 0, 0)
        );
    }

    #[test]
    fn reinstall_removes_duplicate_and_stale_jumps_and_chains() {
        let state = NatState::parse(
            "-N SINEW_OLD\n\
             -A PREROUTING -p tcp -j SINEW_INBOUND\n\
             -A PREROUTING -p tcp -j SINEW_INBOUND\n\
             -A OUTPUT -j SINEW_OLD\n",
        );
        let plan = init_input(&rules(&[]), &state);
        let head: Vec<&str> = plan.input.lines().skip(5).take(4).collect();
        assert_eq!(
            head,
            [
                "-D PREROUTING -p tcp -j SINEW_INBOUND",
                "-D OUTPUT -j SINEW_OLD",
                "-F SINEW_OLD",
                "-X SINEW_OLD",
            ]
        );
        assert!(
            plan.input
                .ends_with("-A OUTPUT -p tcp -j SINEW_OUTPUT\nCOMMIT\n")
        );
        assert!(!plan.input.contains("-A PREROUTING"));
        assert_eq!(
            (plan.jumps_added, plan.jumps_removed, plan.chains_removed),
            (1, 2, 1)
        );
    }

    #[test]
    fn cleanup_deletes_jumps_then_flushes_then_deletes_chains() {
        let input = cleanup_input(&NatState::parse(INSTALLED_LISTING)).expect("rules installed");
        assert_eq!(
            input,
            "*nat\n\
             -D PREROUTING -p tcp -j SINEW_INBOUND\n\
             -D OUTPUT -p tcp -j SINEW_OUTPUT\n\
             -F SINEW_INBOUND\n-F SINEW_IN_REDIRECT\n-F SINEW_OUTPUT\n-F SINEW_REDIRECT\n\
             -X SINEW_INBOUND\n-X SINEW_IN_REDIRECT\n-X SINEW_OUTPUT\n-X SINEW_REDIRECT\n\
             COMMIT\n"
        );
    }

    #[test]
    fn cleanup_with_nothing_installed_does_nothing() {
        let listing = "-P PREROUTING ACCEPT\n-N OTHER\n-A OUTPUT -j OTHER\n";
        assert_eq!(cleanup_input(&NatState::parse(listing)), None);
    }

    #[test]
    fn one_binary_flag_picks_the_matching_sibling() {
        let pick = |flags: &[&str]| {
            let b = Binaries::from_args(&args(flags));
            (
                b.iptables.display().to_string(),
                b.restore.display().to_string(),
            )
        };
        assert_eq!(pick(&[]), ("iptables".into(), "iptables-restore".into()));
        assert_eq!(
            pick(&["--iptables-restore", "/usr/sbin/iptables-legacy-restore"]),
            (
                "/usr/sbin/iptables-legacy".into(),
                "/usr/sbin/iptables-legacy-restore".into()
            )
        );
        assert_eq!(
            pick(&["--iptables", "iptables-nft"]),
            ("iptables-nft".into(), "iptables-nft-restore".into())
        );
        assert_eq!(
            pick(&["--iptables-restore", "/opt/restore-wrapper"]),
            ("iptables".into(), "/opt/restore-wrapper".into())
        );
    }

    #[test]
    fn missing_binary_error_names_it_and_suggests_the_package() {
        let err = run(&args(&["--iptables", "/nonexistent/iptables"]))
            .expect_err("binary is missing")
            .to_string();
        assert!(
            err.starts_with("could not run /nonexistent/iptables: "),
            "{err}"
        );
        assert!(err.contains("apt-get install -y iptables"), "{err}");
        assert!(err.contains("--iptables PATH"), "{err}");
    }

    #[test]
    fn failing_restore_error_names_it_and_includes_stderr() {
        // `true` stands in for an iptables that lists nothing; `sh` rejects restore's flags.
        let err = run(&args(&["--iptables", "true", "--iptables-restore", "sh"]))
            .expect_err("sh is not iptables-restore")
            .to_string();
        assert!(err.starts_with("sh failed (exit status: 2): "), "{err}");
        assert!(err.contains("-w"), "stderr included: {err}");
        assert!(err.contains("apt-get install -y iptables"), "{err}");
    }

    #[test]
    fn restore_errors_quote_the_failing_input_line() {
        let input = "*nat\n-F SINEW_A\n-X SINEW_A\nCOMMIT\n";
        let nft = failed(
            Path::new("iptables-restore"),
            ExitStatus::default(),
            b"iptables-restore v1.8.9 (nf_tables): \n\
              line 3: CHAIN_DEL failed (Device or resource busy): chain SINEW_A\n",
            input,
        );
        assert_eq!(
            nft.to_string(),
            "iptables-restore failed (exit status: 0): iptables-restore v1.8.9 (nf_tables): \
             line 3: CHAIN_DEL failed (Device or resource busy): chain SINEW_A \
             (input: `-X SINEW_A`); a rule outside PREROUTING/OUTPUT still jumps to this SINEW_ \
             chain; delete that rule (iptables -t nat -S | grep SINEW_) and run again"
        );
        let legacy = failed(
            Path::new("iptables-legacy-restore"),
            ExitStatus::default(),
            b"iptables-restore: line 2 failed\n",
            input,
        );
        assert!(
            legacy
                .to_string()
                .contains("line 2 failed (input: `-F SINEW_A`); check that")
        );
    }

    #[test]
    fn permission_errors_suggest_root() {
        let err = failed(
            Path::new("iptables"),
            ExitStatus::default(),
            b"iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: \
              Permission denied (you must be root)\n",
            "",
        );
        assert!(
            err.to_string()
                .ends_with("run it as root or with CAP_NET_ADMIN in the pod's network namespace")
        );
    }
}
