//! Cross-checks of a finished run, and where it ran: the facts that tell a reader whether the
//! figures can be trusted and compared.
//!
//! The simulator, the push document seen during the run and the push document after the
//! daemons stopped must agree on the outcome of every delivery; when they do not, the result
//! carries a warning saying how, instead of leaving the reader to notice. The provenance
//! helpers record what was measured: the commit and the daemon tuning inherited from the
//! environment.

use std::collections::BTreeMap;

use pushservice_model::{Push, PushStatus};

use crate::monitor::{End, Watch};

/// How each figure of `result.json` was obtained (its `notes`).
pub const NOTES: [&str; 6] = [
    "t = 0 is the start of `pushctl send` (after POST /__sink/reset); wall.total_s and latency_s.max/min use the simulator's own first/last acceptance timestamps (ms); wall.flow_rate_per_s = distinct acceptances / (last - first acceptance).",
    "latency_s.pNN: send-to-accept latency of the k-th distinct acceptance (k = ceil(NN% of distinct acceptances)), i.e. the time the simulator's distinct_accepted count reached k, linearly interpolated between samples (anchored at the exact first and last acceptance); resolution is config.sample_ms.",
    "processes[].cpu_s: utime+stime from /proc/<pid>/stat (all threads) between the sample at t = 0 and the last sample, divided by CLK_TCK (config.machine.clk_tck, from `getconf CLK_TCK`, 100 if unavailable); cpu_us_per_msg divides by config.subscribers; cores = cpu_s / delivery phase wall.",
    "the \"untracked\" row is the machine's busy CPU (/proc/stat) minus every listed process: other tenants, kernel threads. processes[].peak_rss_kb: children: highest VmHWM sampled from /proc/<pid>/status while running; kafka/ferretdb/pushbench: VmHWM over their whole lifetime.",
    "wall.fanout_s: the push document's fanout.updatedAt once status is done (set by the parser when it finishes). fanned_out in the timeline comes from the parser's checkpoints (every PARSER_CHECKPOINT_EVERY subscribers).",
    "timeline[].rate_per_s is since the previous sample; wall.peak_rate_per_s and the chart use a 1 s trailing window. timeline[].cpu_cores and rss_mib are per process in the order of timeline_processes.",
];

/// What does not add up between the simulator's counters, the push document as the run saw
/// it (`watch.push`), and the push document after the daemons stopped (`final_push`).
pub fn consistency_warnings(watch: &Watch, final_push: Option<&Push>) -> Vec<String> {
    let mut warnings = Vec::new();
    let seen_done = watch
        .push
        .as_ref()
        .is_some_and(|p| p.status == PushStatus::Done);
    let Some(push) = final_push else {
        warnings.push("the push document could not be read after the run".to_owned());
        return warnings;
    };
    if seen_done && push.status != PushStatus::Done {
        warnings.push(format!(
            "the push was seen done during the run but is {} afterwards (totalSent {}, fanout {}): \
             a later write replaced the parser's; on FerretDB, concurrent updates of one document \
             are read-modify-write and can undo each other",
            push.status,
            push.total_sent,
            if push.fanout.is_some() {
                "present"
            } else {
                "missing"
            }
        ));
    }
    let stats = &watch.stats;
    let gone: u64 = [404u16, 410]
        .iter()
        .filter_map(|c| stats.by_status.get(c))
        .sum();
    let counted = |n: i64| u64::try_from(n).unwrap_or(0);
    if watch.end == End::Complete
        && (counted(push.total_accepted) != stats.distinct_accepted
            || counted(push.total_unsubscribed) != gone)
    {
        warnings.push(format!(
            "push counters (accepted {}, unsubscribed {}) differ from the simulator's (distinct \
             accepted {}, 404/410 answers {gone})",
            push.total_accepted, push.total_unsubscribed, stats.distinct_accepted
        ));
    }
    if stats.duplicates > 0 {
        warnings.push(format!(
            "{} duplicate deliveries (at-least-once redeliveries)",
            stats.duplicates
        ));
    }
    warnings
}

/// Daemon tuning in this environment that the children inherit.
pub fn env_passthrough() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(key, _)| {
            ["SENDER_", "PARSER_", "PUSH_SINK_"]
                .iter()
                .any(|prefix| key.starts_with(prefix))
                || key == "QUERY_BATCH_SIZE"
        })
        .collect()
}

/// `git describe --always --dirty` in the working directory, if it is a checkout.
pub fn git_describe() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushservice_model::ObjectId;
    use pushservice_push_sink::Stats;
    use std::collections::BTreeMap;

    fn push(status: PushStatus, accepted: i64, unsubscribed: i64) -> Push {
        let mut push = Push::new(ObjectId::new(), "t".into(), Default::default());
        push.status = status;
        push.total_accepted = accepted;
        push.total_unsubscribed = unsubscribed;
        push
    }

    fn watch(seen: PushStatus, accepted: u64, gone: u64) -> Watch {
        Watch {
            samples: Vec::new(),
            end: End::Complete,
            stats: Stats {
                distinct_accepted: accepted,
                by_status: BTreeMap::from([(201, accepted), (410, gone)]),
                ..Stats::default()
            },
            push: Some(push(seen, 0, 0)),
        }
    }

    #[test]
    fn agreeing_counts_give_no_warning() {
        let final_push = push(PushStatus::Done, 98, 2);
        assert!(
            consistency_warnings(&watch(PushStatus::Done, 98, 2), Some(&final_push)).is_empty()
        );
    }

    #[test]
    fn a_push_undone_after_the_run_is_reported() {
        let final_push = push(PushStatus::Processing, 98, 2);
        let warnings = consistency_warnings(&watch(PushStatus::Done, 98, 2), Some(&final_push));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("seen done"), "{warnings:?}");
    }

    #[test]
    fn lost_counter_updates_are_reported() {
        let final_push = push(PushStatus::Done, 922_399, 0);
        let warnings =
            consistency_warnings(&watch(PushStatus::Done, 1_000_000, 0), Some(&final_push));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("922399"), "{warnings:?}");
    }
}
