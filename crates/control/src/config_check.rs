//! `pushctl config check`: is this installation able to deliver? Every problem at once, each
//! naming the setting, or the site and field, to fix, and how.
//!
//! The daemons' own settings are validated by the daemons' own code (the front end loads
//! each daemon's flags from the environment and hands the errors to [`Report::setting`]);
//! what needs the services is checked here:
//!
//! - [`check_topics`]: every configured topic exists with the configured partition count;
//! - [`check_sites`]: every site's credentials parse as the senders will parse them (VAPID
//!   key pair, APNs `.p8` key and ids, FCM service account and its `token_uri` against
//!   `SENDER_FCM_TOKEN_URL`), its VAPID subject is a contact push services accept, and a
//!   site that uses realtime has a secret to sign connection tokens with.
//!
//! A [`Report`] separates problems (exit 1: fix them) from checks that could not be made
//! (exit 2: a service did not answer, or the settings to reach it are wrong).

use std::collections::BTreeMap;

use bson::Document;
use pushservice_config::{ConfigError, KafkaSettings, TopicSpec, Topics};
use pushservice_kafka::{KafkaError, PositionReader};
use pushservice_model::Site;
use pushservice_store::{SITES, Store, StoreError};
use pushservice_webpush::{VapidError, VapidKey};

/// One thing to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, as the operator finds it: a setting (`TOPIC_PUSH_PARTITIONS`) or a
    /// site's field (`site 65f… apns.privateKey`).
    pub subject: String,
    /// What is wrong with it.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// A check that could not be made, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    /// What was not checked.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks that passed, one line each.
    pub passed: Vec<String>,
    /// Problems, in the order found.
    pub problems: Vec<Problem>,
    /// Checks not made.
    pub unchecked: Vec<Unchecked>,
}

impl Report {
    /// Adds a problem.
    pub fn problem(
        &mut self,
        subject: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let problem = Problem {
            subject: subject.into(),
            problem: problem.into(),
            fix: fix.into(),
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// Adds a check that could not be made.
    pub fn unchecked(&mut self, what: impl Into<String>, reason: impl Into<String>) {
        self.unchecked.push(Unchecked {
            what: what.into(),
            reason: reason.into(),
        });
    }

    /// Adds a passed check.
    pub fn passed(&mut self, what: impl Into<String>) {
        self.passed.push(what.into())
    }

    /// Records the outcome of loading the settings of the daemons in `daemons` (what their
    /// `settings()` answered). Errors several daemons share (a wrong `KAFKA_BROKERS`) are
    /// listed once, naming every daemon that reads it.
    pub fn settings(&mut self, outcomes: &[(&str, Result<(), ConfigError>)]) {
        let mut failed: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for (daemon, outcome) in outcomes {
            match outcome {
                Ok(()) => self.passed(format!("{daemon} settings load")),
                Err(e) => failed
                    .entry((e.key, e.problem.as_str()))
                    .or_default()
                    .push(daemon),
            }
        }
        for ((key, problem), daemons) in failed {
            self.problem(
                key,
                problem,
                format!(
                    "set {key} in .env or the environment of {} (see .env.example); \
                     {} stop(s) at start until it is fixed",
                    daemons.join(", "),
                    daemons.join(", ")
                ),
            );
        }
    }

    /// The process exit code: 2 when something could not be checked, else 1 when there are
    /// problems, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.unchecked.is_empty() {
            2
        } else if !self.problems.is_empty() {
            1
        } else {
            0
        }
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.problems.is_empty() && self.unchecked.is_empty(),
            "problems": self.problems.iter().map(|p| serde_json::json!({
                "subject": p.subject,
                "problem": p.problem,
                "fix": p.fix,
            })).collect::<Vec<_>>(),
            "unchecked": self.unchecked.iter().map(|u| serde_json::json!({
                "what": u.what,
                "reason": u.reason,
            })).collect::<Vec<_>>(),
            "passed": self.passed,
        })
    }
}

/// A topic the configuration expects, with the settings that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTopic {
    /// Name and partition count.
    pub spec: TopicSpec,
    /// The setting of its name (`TOPIC_PUSH`).
    pub name_key: &'static str,
    /// The setting of its partition count (`TOPIC_PUSH_PARTITIONS`).
    pub partitions_key: &'static str,
}

/// Every topic of `topics`, with its settings.
pub fn expected_topics(topics: &Topics) -> Vec<ExpectedTopic> {
    let topic = |spec: &TopicSpec, name_key, partitions_key| ExpectedTopic {
        spec: spec.clone(),
        name_key,
        partitions_key,
    };
    let mut expected = vec![
        topic(
            &topics.raw_push,
            "TOPIC_RAW_PUSH",
            "TOPIC_RAW_PUSH_PARTITIONS",
        ),
        topic(&topics.push, "TOPIC_PUSH", "TOPIC_PUSH_PARTITIONS"),
        topic(
            &topics.dead_letter,
            "TOPIC_PUSH_DLQ",
            "TOPIC_PUSH_DLQ_PARTITIONS",
        ),
        topic(
            &topics.outcomes,
            "TOPIC_PUSH_OUTCOMES",
            "TOPIC_PUSH_OUTCOMES_PARTITIONS",
        ),
        topic(
            &topics.realtime,
            "TOPIC_REALTIME",
            "TOPIC_REALTIME_PARTITIONS",
        ),
    ];
    for (spec, _) in topics.retry_tiers() {
        expected.push(topic(
            &spec,
            "TOPIC_PUSH_RETRY",
            "TOPIC_PUSH_RETRY_PARTITIONS",
        ));
    }
    expected
}

/// Checks that every topic of `topics` exists with its configured partition count. Fails
/// only when Kafka cannot be asked. Blocking.
pub fn check_topics(
    kafka: &KafkaSettings,
    topics: &Topics,
    report: &mut Report,
) -> Result<(), KafkaError> {
    let positions = PositionReader::new(kafka)?;
    positions.check_reachable()?;
    report.passed(format!("Kafka answers at {}", kafka.brokers));
    for expected in expected_topics(topics) {
        let ExpectedTopic {
            spec,
            name_key,
            partitions_key,
        } = &expected;
        match positions.partitions(&spec.name) {
            Ok(found) if found == spec.partitions => {
                report.passed(format!("topic {} has {found} partitions", spec.name))
            }
            Ok(found) => report.problem(
                *partitions_key,
                format!(
                    "topic {} has {found} partitions, {partitions_key} says {}",
                    spec.name, spec.partitions
                ),
                partition_fix(&expected, found),
            ),
            Err(KafkaError::UnknownTopic { .. }) => report.problem(
                *name_key,
                format!("topic {} does not exist on {}", spec.name, kafka.brokers),
                format!(
                    "run `pushctl setup` (or `pushctl topics create`) to create it with {} \
                     partitions, or set {name_key} to the topic's name if it exists under \
                     another",
                    spec.partitions
                ),
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How to reconcile a topic's partition count with its setting.
fn partition_fix(expected: &ExpectedTopic, found: i32) -> String {
    let key = expected.partitions_key;
    if found > expected.spec.partitions {
        // Kafka cannot take partitions away: the setting has to follow the topic.
        format!("set {key}={found} (Kafka cannot remove partitions)")
    } else {
        format!(
            "set {key}={found}, or add partitions with `kafka-topics.sh --alter --topic {} \
             --partitions {}` (records keyed before then stay in their old partitions)",
            expected.spec.name, expected.spec.partitions
        )
    }
}

/// Checks every site's credentials; returns how many sites were checked. Fails only when
/// MongoDB cannot be read.
///
/// `fcm_token_url` is the senders' `SENDER_FCM_TOKEN_URL` when their settings loaded: a
/// service account naming another `token_uri` is refused by every sender.
pub async fn check_sites(
    store: &Store,
    fcm_token_url: Option<&str>,
    report: &mut Report,
) -> Result<usize, StoreError> {
    let context = "reading sites";
    let mut cursor = store
        .database()
        .collection::<Document>(SITES)
        .find(bson::doc! {})
        .await
        .map_err(query(context))?;
    let mut sites = 0;
    let problems_before = report.problems.len();
    while cursor.advance().await.map_err(query(context))? {
        let document = cursor.deserialize_current().map_err(query(context))?;
        sites += 1;
        for problem in site_problems(&document, fcm_token_url) {
            report.problems.push(problem);
        }
    }
    if report.problems.len() == problems_before {
        report.passed(format!("credentials of {sites} site(s) are usable"));
    }
    Ok(sites)
}

/// What is wrong with one `sites` document, each problem naming the field and the fix.
pub fn site_problems(document: &Document, fcm_token_url: Option<&str>) -> Vec<Problem> {
    let id = match document.get("_id") {
        Some(bson::Bson::ObjectId(id)) => id.to_hex(),
        Some(other) => other.to_string(),
        None => "(no _id)".to_owned(),
    };
    let mut problems = Vec::new();
    let mut problem = |field: &str, what: String, fix: String| {
        problems.push(Problem {
            subject: format!("site {id} {field}"),
            problem: what,
            fix,
        });
    };
    let site: Site = match bson::from_document(document.clone()) {
        Ok(site) => site,
        Err(e) => {
            problem(
                "(document)",
                format!("the document does not fit the sites schema: {e}"),
                "correct the field named in MongoDB (`pushctl site show` shows what the senders read)"
                    .to_owned(),
            );
            return problems;
        }
    };

    // Web Push: the pair browsers subscribed with.
    if let Err(e) = VapidKey::from_base64(&site.public_key, &site.private_key) {
        let field = match &e {
            VapidError::Decode(decode) if decode.to_string().contains("public") => "publicKey",
            VapidError::Decode(_) => "privateKey",
            _ => "publicKey/privateKey",
        };
        problem(
            field,
            format!("{e}; every Web Push delivery of the site fails"),
            "put back the VAPID key pair the site was created with: browsers subscribed with \
             its publicKey, so a new pair means every browser must subscribe again"
                .to_owned(),
        );
    }
    if let Err(e) = crate::sites::check_subject(&site.subject) {
        problem(
            "subject",
            e.to_string(),
            format!(
                "PATCH /v1/sites/{id} with {{\"subject\": \"mailto:ops@example.com\"}} (pushapi, \
                 admin token)"
            ),
        );
    }

    // APNs, when the site has it.
    if let Some(apns) = &site.apns {
        let fix = format!(
            "pushctl site apns {id} --key-file AuthKey_<KEYID>.p8 --team-id <TEAM ID> \
             --topic <bundle id> [--sandbox] (or --remove)"
        );
        // The topic on its own, so a wrong key is reported along with a missing topic.
        let topic = apns.topic.trim();
        if topic.is_empty() {
            problem(
                "apns.topic",
                "empty: the iOS app's bundle id (sent as apns-topic) is missing; every iOS \
                 delivery of the site fails"
                    .to_owned(),
                fix.clone(),
            );
        }
        if let Err(e) = crate::sites::apns_credentials(
            &apns.team_id,
            &apns.key_id,
            &apns.private_key,
            if topic.is_empty() { "-" } else { topic },
            apns.sandbox,
        ) {
            let field = match &e {
                crate::ControlError::Invalid { field, .. }
                | crate::ControlError::Unusable { field, .. } => format!("apns.{field}"),
                _ => "apns".to_owned(),
            };
            let message = match &e {
                crate::ControlError::Invalid { message, .. }
                | crate::ControlError::Unusable { message, .. } => message.clone(),
                other => other.to_string(),
            };
            problem(
                &field,
                format!("{message}; every iOS delivery of the site fails"),
                fix,
            );
        }
    }

    // FCM, when the site has it.
    if let Some(fcm) = &site.fcm {
        let fix = format!(
            "pushctl site fcm {id} --service-account <key file>.json (the file from the Firebase \
             console; or --remove)"
        );
        match pushservice_fcm::ServiceAccount::from_json(&fcm.service_account) {
            Err(e) => problem(
                "fcm.serviceAccount",
                format!("{e}; every Android delivery of the site fails"),
                fix,
            ),
            Ok(account) => {
                let wanted = fcm_token_url.and_then(|u| url::Url::parse(u).ok());
                let named = url::Url::parse(&account.token_uri).ok();
                if let (Some(wanted), Some(token_url)) = (wanted, fcm_token_url)
                    && named.as_ref() != Some(&wanted)
                {
                    problem(
                        "fcm.serviceAccount.token_uri",
                        format!(
                            "the service account names token_uri {:?}, not the senders' \
                             SENDER_FCM_TOKEN_URL ({token_url}); senders refuse it",
                            account.token_uri
                        ),
                        format!(
                            "set SENDER_FCM_TOKEN_URL to the token endpoint the site's account \
                             uses, or {fix}"
                        ),
                    );
                }
            }
        }
    }

    // Realtime: a site that uses it signs connection tokens with its secret.
    if let Ok(realtime) = document.get_document("realtime") {
        let secrets = realtime.get_array("secrets").map(|list| {
            list.iter()
                .filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
                .count()
        });
        if !matches!(secrets, Ok(n) if n > 0) {
            problem(
                "realtime.secrets",
                "the site has realtime settings but no secret: gateways refuse every \
                 connection token"
                    .to_owned(),
                format!(
                    "pushctl realtime-token {id} <user> (creates a secret on first use), or POST \
                     /v1/sites/{id}/realtime/secret"
                ),
            );
        }
    }
    problems
}

/// A MongoDB failure while `context`.
fn query(context: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |source| StoreError::Query {
        context: context.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn site_document() -> Document {
        let site = crate::sites::new_site("mailto:ops@example.com", &[]).expect("site");
        bson::to_document(&site).expect("document")
    }

    #[test]
    fn a_fresh_site_has_no_problems() {
        assert_eq!(site_problems(&site_document(), None), []);
    }

    #[test]
    fn every_problem_of_a_site_is_named_by_field() {
        let mut document = site_document();
        let other = site_document();
        document.insert("publicKey", other.get_str("publicKey").expect("key"));
        document.insert("subject", "ops@example.com");
        document.insert(
            "apns",
            doc! { "teamId": "TEAM", "keyId": "KEY", "privateKey": "not a key", "topic": "" },
        );
        document.insert("fcm", doc! { "serviceAccount": "{ not json" });
        document.insert("realtime", doc! { "secrets": [] });
        let problems = site_problems(&document, Some("https://oauth2.googleapis.com/token"));
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.subject.rsplit(' ').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "publicKey/privateKey",
                "subject",
                "apns.topic",
                "apns.privateKey",
                "fcm.serviceAccount",
                "realtime.secrets"
            ],
            "{problems:#?}"
        );
        assert!(
            problems[0].problem.contains("does not match"),
            "{problems:#?}"
        );
        assert!(
            problems[3].fix.starts_with("pushctl site apns "),
            "{problems:#?}"
        );
        assert!(
            problems[4].fix.starts_with("pushctl site fcm "),
            "{problems:#?}"
        );
    }

    #[test]
    fn shared_setting_errors_are_listed_once_and_exit_codes_rank() {
        let mut report = Report::default();
        let wrong = ConfigError {
            key: "KAFKA_BROKERS",
            problem: "\"x\" is not host:port".into(),
        };
        report.settings(&[
            ("parser", Err(wrong.clone())),
            ("sender", Err(wrong)),
            ("gateway", Ok(())),
        ]);
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].fix.contains("parser, sender"),
            "{report:?}"
        );
        assert_eq!(report.exit_code(), 1);
        report.unchecked("Kafka", "unreachable");
        assert_eq!(report.exit_code(), 2);
        assert_eq!(Report::default().exit_code(), 0);
    }
}
