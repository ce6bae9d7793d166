//! Runs one parsed command against the node and prints its answer.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::time::Instant;

use super::args::{
    Cli, Command, JobCommand, LedgerCommand, LogsArgs, MoneyArgs, NodeCommand, OffersCommand,
    ProviderCommand, SubmitArgs,
};
use super::logs::{self, LogPrinter};
use super::progress::Waiting;
use super::{money, render, result, watch};
use agora_client::api::{JobState, JobView, SubmitJob};
use agora_client::http::NodeClient;
use agora_client::spec;

/// How often `agora job submit` asks the node about its job.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the command. `Err` is printed as `agora: <message>`, exit 1.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    // An empty AGORA_TOKEN means none, not the empty token.
    let token = cli.token.as_deref().filter(|t| !t.is_empty());
    let node = NodeClient::new(&cli.node, token)?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Offers(OffersCommand::Search(args)) => {
            let query = args.query.join(" ");
            let page = node
                .search_offers_sorted(&query, args.sort.as_deref(), args.limit)
                .await?;
            out.show(&page, render::offers_page)
        }
        Command::Offers(OffersCommand::Show { id }) => {
            out.show(&node.offer(&id).await?, render::offer)
        }
        Command::Job(JobCommand::Submit(args)) => submit(&node, &out, args).await,
        Command::Job(JobCommand::Status { id }) => out.show(&node.job(&id).await?, render::job),
        Command::Job(JobCommand::List(args)) if args.watch => {
            watch::jobs(&node, out.json, Duration::from_secs(args.interval)).await
        }
        Command::Job(JobCommand::List(_)) => out
            .show(&node.jobs().await?, |jobs: &Vec<JobView>| {
                render::jobs(jobs)
            }),
        Command::Job(JobCommand::Logs(args)) => job_logs(&node, &out, args).await,
        Command::Job(JobCommand::Result { id, output }) => {
            let (view, files) = result::download(&node, &id, &output).await?;
            out.show(&view, |v| render::result_files(v, &files))
        }
        Command::Job(JobCommand::Cancel { id }) => {
            let job = node.cancel_job(&id).await?;
            out.show(&job, |j| format!("{}\n", render::progress(j)))
        }
        Command::Ledger(LedgerCommand::Balance) => {
            out.show(&node.balance().await?, render::balance)
        }
        Command::Ledger(LedgerCommand::Deposit { amount }) => {
            let balance = node.deposit(amount).await?;
            out.show(&balance, |b| {
                format!("deposited {}\n{}", render::agr(amount), render::balance(b))
            })
        }
        Command::Node(NodeCommand::Info) => out.show(&node.node_info().await?, render::node_info),
        Command::Provider(ProviderCommand::Status) => {
            out.show(&node.provider_status().await?, render::provider_status)
        }
        Command::Provider(ProviderCommand::Earnings(args)) => {
            let (bucket, since) = money_window(&args);
            let page = node.earnings(bucket, since).await?;
            out.show(&page, |p| money::page(p, "earned"))
        }
        Command::Billing(args) => {
            let (bucket, since) = money_window(&args);
            let page = node.billing(bucket, since).await?;
            out.show(&page, |p| money::page(p, "spent"))
        }
    }
}

/// The bucket and the start of the window `args` ask for.
fn money_window(
    args: &MoneyArgs,
) -> (agora_client::api::Bucket, Option<agora_protocol::Timestamp>) {
    (
        args.bucket.into(),
        args.since.map(|s| s.resolve(money::now())),
    )
}

/// `agora job submit`: submit, then follow the job until it is placed or
/// ends; with `--watch`, to its end.
async fn submit(node: &NodeClient, out: &Output, args: SubmitArgs) -> anyhow::Result<()> {
    let spec = spec::load(&args.file)?;
    let mut job = node
        .submit_job(&SubmitJob {
            spec,
            offer: args.offer,
        })
        .await?;
    if args.no_wait {
        return out.show(&job, render::job);
    }
    let waiting = Waiting::start(&job);
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let mut last = render::progress(&job);
    while !placed_or_ended(job.state) {
        if Instant::now() >= deadline {
            waiting.finish();
            bail!(
                "job {} is still {} after {}s; it goes on: follow it with `agora job status {}`",
                job.id,
                render::state(job.state),
                args.wait_secs,
                job.id
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        job = match node.job(&job.id).await {
            Ok(job) => job,
            Err(e) => {
                waiting.finish();
                return Err(e).with_context(|| format!("following job {}", job.id));
            }
        };
        let now = render::progress(&job);
        if now != last {
            waiting.changed(&job);
            last = now;
        }
    }
    waiting.finish();
    if !args.watch || job.lease.is_none() {
        return finish(out, &job);
    }
    let printer = LogPrinter::new(out.json);
    let job = logs::follow(node, &printer, &job.id, 0).await?;
    if out.json {
        out.show_line(&job)?;
    } else {
        out.show(&job, render::summary)?;
    }
    ended_well(&job)
}

/// Leased, running, settling, or ended: `agora job submit` returns.
fn placed_or_ended(state: JobState) -> bool {
    matches!(
        state,
        JobState::Leased | JobState::Running | JobState::Settling
    ) || state.is_terminal()
}

/// `agora job logs`.
async fn job_logs(node: &NodeClient, out: &Output, args: LogsArgs) -> anyhow::Result<()> {
    let printer = LogPrinter::new(out.json);
    if !args.follow {
        return logs::print_existing(node, &printer, &args.id, args.after).await;
    }
    let job = logs::follow(node, &printer, &args.id, args.after).await?;
    ended_well(&job)
}

/// `Ok` if the job succeeded, else why not.
fn ended_well(job: &JobView) -> anyhow::Result<()> {
    if job.state == JobState::Succeeded {
        return Ok(());
    }
    match render::outcome_error(job) {
        Some(why) => bail!(why),
        None => bail!("job {} ended {}", job.id, render::state(job.state)),
    }
}

/// Prints a settled job; a job that got no bids or failed is an error.
fn finish(out: &Output, job: &JobView) -> anyhow::Result<()> {
    out.show(job, render::job)?;
    match render::outcome_error(job) {
        Some(why) => bail!(why),
        None => Ok(()),
    }
}

/// Where answers go: stdout, as JSON or as text for people.
struct Output {
    json: bool,
}

impl Output {
    /// One compact JSON line on stdout.
    fn show_line<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let json = Output { json: false };
        let line = serde_json::to_string(value)?;
        json.show(&line, |l| format!("{l}\n"))
    }

    fn show<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        let text = if self.json {
            let mut text = serde_json::to_string_pretty(value)?;
            text.push('\n');
            text
        } else {
            human(value)
        };
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // `agora ... | head` closed the pipe: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing to stdout"),
        }
    }
}
