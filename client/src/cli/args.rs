//! The command line, as clap derive types.

use std::path::PathBuf;

use agora_protocol::Amount;
use clap::{Args, Parser, Subcommand};

/// Rent GPUs on the Agora market through a local `agorad` node.
#[derive(Debug, Parser)]
#[command(name = "agora", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The node's API URL.
    #[arg(
        long,
        global = true,
        env = "AGORA_NODE",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL",
        help_heading = "Node"
    )]
    pub(crate) node: String,
    /// The node's API token (the hex in its DATA/api.token).
    #[arg(
        long,
        global = true,
        env = "AGORA_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Node"
    )]
    pub(crate) token: Option<String>,
    /// Print the API's JSON answer instead of tables.
    #[arg(long, global = true, help_heading = "Output")]
    pub(crate) json: bool,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Offers in the node's book.
    #[command(subcommand)]
    Offers(OffersCommand),
    /// Submit and follow jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// This node's ledger account.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// The node itself.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The provider side of the node.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// What this node spent as a requester, by hour or day, from the
    /// receipts it countersigned (and what the ledger has settled).
    Billing(MoneyArgs),
}

/// `agora offers ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum OffersCommand {
    /// Offers matching a query, best first.
    ///
    /// The words are joined with spaces into one query, e.g.
    /// `agora offers search gpu=H100 region=EU 'price<=3'` (quote `<` and `>`
    /// from the shell). No words lists every offer.
    Search(SearchArgs),
    /// One offer in full.
    Show {
        /// Offer id (hex).
        id: String,
    },
}

/// `agora offers search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Query terms, e.g. gpu=H100 region=EU price<=3.
    #[arg(value_name = "QUERY")]
    pub(crate) query: Vec<String>,
    /// At most this many offers.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u32>,
    /// Order by a numeric column of the query language, ascending, or
    /// `KEY:desc`: `price`, `tflop_price` (the cheapest compute, not the
    /// cheapest card), `tflops`, `vram`, `count`, `free`, …
    #[arg(long, value_name = "KEY[:desc]", value_parser = sort_key)]
    pub(crate) sort: Option<String>,
}

/// A sort key the query language knows (checked before anything is sent).
fn sort_key(text: &str) -> Result<String, String> {
    text.parse::<agora_protocol::SortKey>()
        .map(|_| text.to_string())
        .map_err(|e| e.message)
}

/// `agora job ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Submit a job spec file (TOML) and wait until it is placed (leased or
    /// running) or ends; with --watch, follow it to the end.
    ///
    /// Exits 1 when the job ends with no bids (listing each provider's
    /// reason), fails or is cancelled.
    Submit(SubmitArgs),
    /// One job: state, lease, bids, declines, and its run: exit code,
    /// latest receipt, settlement, outputs.
    Status {
        /// Job id (hex).
        id: String,
    },
    /// Every job of this node; with --watch, kept up to date.
    List(ListArgs),
    /// A job's log: its output (stdout to stdout, stderr to stderr) and
    /// lifecycle events (on stderr).
    ///
    /// With --follow, exits 0 if the job succeeded and 1 otherwise.
    Logs(LogsArgs),
    /// Download a finished job's output files into a directory and verify
    /// each against the job's manifest (blake3).
    Result {
        /// Job id (hex).
        id: String,
        /// Where to put the files (created if missing).
        #[arg(short, long = "output", value_name = "DIR")]
        output: PathBuf,
    },
    /// Cancel a job: stop it and settle what it used.
    Cancel {
        /// Job id (hex).
        id: String,
    },
}

/// `agora job list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Keep the table up to date until interrupted (on a terminal it is
    /// redrawn in place; otherwise, and with --json, each change is printed
    /// once: with --json as one line per changed job).
    #[arg(short, long)]
    pub(crate) watch: bool,
    /// Seconds between looks with --watch.
    #[arg(long, value_name = "SECS", default_value_t = 2, requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) interval: u64,
}

/// `agora billing` and `agora provider earnings`.
#[derive(Debug, Args)]
pub(crate) struct MoneyArgs {
    /// One row per hour or per day (UTC).
    #[arg(long, value_enum, default_value_t = BucketArg::Day)]
    pub(crate) bucket: BucketArg,
    /// From when: a span back from now (`90m`, `24h`, `7d`, `2w`) or Unix
    /// milliseconds. By default the last 24 hours by hour, 30 days by day.
    #[arg(long, value_name = "WHEN", value_parser = super::money::parse_since)]
    pub(crate) since: Option<super::money::Since>,
}

/// `--bucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BucketArg {
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl From<BucketArg> for agora_client::api::Bucket {
    fn from(b: BucketArg) -> Self {
        match b {
            BucketArg::Hour => Self::Hour,
            BucketArg::Day => Self::Day,
        }
    }
}

/// `agora job logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Job id (hex).
    pub(crate) id: String,
    /// Follow the log live until the job ends.
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Start after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub(crate) after: u64,
}

/// `agora job submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The job spec file.
    pub(crate) file: PathBuf,
    /// Lease this offer directly, without an auction.
    #[arg(long, value_name = "ID")]
    pub(crate) offer: Option<String>,
    /// Print the submitted job and return without waiting.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Follow the job to its end: progress, then its log, then a
    /// settlement summary. Exits 0 only if the job succeeded.
    #[arg(long, conflicts_with = "no_wait")]
    pub(crate) watch: bool,
    /// Stop waiting for the job to be placed after this many seconds (the
    /// job goes on; follow it with `agora job status`).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 300,
        conflicts_with = "no_wait"
    )]
    pub(crate) wait_secs: u64,
}

/// `agora ledger ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// This node's spendable balance.
    Balance,
    /// Credit this node's account from the mock chain's faucet.
    Deposit {
        /// AGR, e.g. 100 or 2.5.
        amount: Amount,
    },
}

/// `agora node ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Identity, peers, gossip counters.
    Info,
}

/// `agora provider ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCommand {
    /// GPUs, offers, reservations, leases, runs and earnings.
    Status,
    /// What the provider earned, by hour or day, from the receipts its
    /// requesters countersigned (and what the ledger has settled).
    Earnings(MoneyArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn query_words_are_collected_and_amounts_parsed() {
        let cli = Cli::try_parse_from([
            "agora",
            "offers",
            "search",
            "gpu=H100",
            "region=EU",
            "price<=3",
            "--limit",
            "5",
            "--sort",
            "tflop_price:desc",
        ])
        .unwrap();
        match cli.command {
            Command::Offers(OffersCommand::Search(args)) => {
                assert_eq!(args.query, ["gpu=H100", "region=EU", "price<=3"]);
                assert_eq!(args.limit, Some(5));
                assert_eq!(args.sort.as_deref(), Some("tflop_price:desc"));
            }
            other => panic!("{other:?}"),
        }
        // A sort key the language does not know is a usage error naming it.
        let err = Cli::try_parse_from(["agora", "offers", "search", "--sort", "colour"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        let cli = Cli::try_parse_from(["agora", "--json", "ledger", "deposit", "2.5"]).unwrap();
        assert!(cli.json);
        match cli.command {
            Command::Ledger(LedgerCommand::Deposit { amount }) => {
                assert_eq!(amount, Amount(2_500_000))
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["agora", "job", "logs", "j1", "-f", "--after", "7"]).unwrap();
        match cli.command {
            Command::Job(JobCommand::Logs(args)) => {
                assert!(args.follow);
                assert_eq!((args.id.as_str(), args.after), ("j1", 7));
            }
            other => panic!("{other:?}"),
        }
        let err = Cli::try_parse_from(["agora", "ledger", "deposit", "lots"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let cli = Cli::try_parse_from([
            "agora", "provider", "earnings", "--bucket", "hour", "--since", "7d",
        ])
        .unwrap();
        match cli.command {
            Command::Provider(ProviderCommand::Earnings(args)) => {
                assert_eq!(args.bucket, BucketArg::Hour);
                assert_eq!(
                    args.since,
                    Some(super::super::money::Since::Back(7 * 86_400_000))
                );
            }
            other => panic!("{other:?}"),
        }
        let err = Cli::try_parse_from(["agora", "billing", "--since", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
        let err = Cli::try_parse_from(["agora", "billing", "--bucket", "week"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let cli = Cli::try_parse_from(["agora", "job", "list", "-w", "--interval", "5"]).unwrap();
        match cli.command {
            Command::Job(JobCommand::List(args)) => assert!(args.watch && args.interval == 5),
            other => panic!("{other:?}"),
        }
        // --interval without --watch is a usage error.
        assert!(Cli::try_parse_from(["agora", "job", "list", "--interval", "5"]).is_err());
    }
}
