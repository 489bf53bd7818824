//! The OpenAPI document served at `/openapi.json` describes the router's routes exactly.
//!
//! Checked offline, without MongoDB or Kafka: the embedded document parses as OpenAPI 3.1.0;
//! its operations are exactly `routes::ROUTES` (the list the router is built from), both ways;
//! every `$ref` resolves; every path parameter of a template is declared by each operation of
//! that path (and none is declared that the template lacks); every operation has an id, a
//! summary, a description, a success response and only known security schemes.
//!
//! Against the code itself: the members of every request body schema (and query) are exactly
//! the fields of the struct the handler parses, and unknown ones are refused on both sides;
//! the notification options, action fields and `dir` values are those `Content::into_push`
//! accepts; the site, push and subscriber views answer exactly the documented members; the
//! error codes listed by the `Error` schema are exactly those the sources answer; every error
//! response is a JSON `Error`; routes with ids in the path, bodies, queries or credentials
//! document their 400/401/403/413/415; limits match the handlers' constants.
//!
//! Not checked here: sending requests through `routes::router` itself. It needs an
//! `AppState`, whose `Store` can only be made by `Store::connect`, which pings MongoDB.

use std::collections::{BTreeMap, BTreeSet};

use pushservice_model::{
    ApiKey, ApnsCredentials, Audience, FanoutProgress, FcmCredentials, Notification,
    NotificationAction, ObjectId, Push, ReasonCount, Site,
};
use pushservice_pushapi::routes::static_files::OPENAPI;
use pushservice_pushapi::routes::{
    ROUTES, channels, dead_letters, events, notifications, pushes, realtime, site_list, sites,
    subscribers,
};
use pushservice_pushapi::views;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON")
}

/// Every (METHOD, path) operation of the document, with the operation object.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let paths = doc["paths"]
        .as_object()
        .expect("openapi.json has a `paths` object");
    let mut out = BTreeMap::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .unwrap_or_else(|| panic!("paths[{path}] is not an object"));
        for (key, operation) in item {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_uppercase(), path.clone()), operation);
            }
        }
    }
    out
}

/// The value a local reference (`#/components/...`) points to.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// `value`, or what it refers to when it is a `{"$ref": ...}`.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            resolve(doc, reference).unwrap_or_else(|| panic!("unresolved $ref {reference}"))
        }
        None => value,
    }
}

/// Every `$ref` in `value`, with the JSON pointer of where it is.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                if key == "$ref"
                    && let Some(reference) = child.as_str()
                {
                    found.push((here.clone(), reference.to_owned()));
                }
                references(child, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                references(child, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// The `{name}` parameters of a path template, in order.
fn template_parameters(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            panic!("unbalanced braces in path template {path}");
        };
        out.push(rest[start + 1..start + end].to_owned());
        rest = &rest[start + end + 1..];
    }
    out
}

#[test]
fn is_openapi_3_1_0() {
    let doc = document();
    assert_eq!(
        doc["openapi"].as_str(),
        Some("3.1.0"),
        "openapi.json must declare \"openapi\": \"3.1.0\""
    );
    assert!(
        doc["info"]["title"].is_string() && doc["info"]["version"].is_string(),
        "openapi.json needs info.title and info.version"
    );
}

#[test]
fn operations_are_exactly_the_routes() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(
        routed.len(),
        ROUTES.len(),
        "ROUTES lists an operation twice"
    );
    let undocumented: Vec<String> = routed
        .difference(&documented)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let unrouted: Vec<String> = documented
        .difference(&routed)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "openapi.json and routes::ROUTES disagree.\n  in ROUTES, missing from openapi.json: \
         {undocumented:?}\n  in openapi.json, not in ROUTES: {unrouted:?}"
    );
}

#[test]
fn every_ref_resolves() {
    let doc = document();
    let mut found = Vec::new();
    references(&doc, "", &mut found);
    assert!(!found.is_empty(), "openapi.json has no $ref at all");
    let broken: Vec<String> = found
        .iter()
        .filter(|(_, reference)| resolve(&doc, reference).is_none())
        .map(|(at, reference)| format!("{at}: {reference}"))
        .collect();
    assert!(
        broken.is_empty(),
        "$refs that resolve to nothing in openapi.json:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn path_parameters_are_declared_by_every_operation() {
    let doc = document();
    let mut problems = Vec::new();
    for ((method, path), operation) in operations(&doc) {
        // Parameters of the path item apply to all its operations; the operation's own may
        // add to them.
        let shared = doc["paths"][&path]["parameters"].as_array();
        let own = operation["parameters"].as_array();
        let declared: BTreeMap<String, &Value> = shared
            .into_iter()
            .flatten()
            .chain(own.into_iter().flatten())
            .map(|parameter| deref(&doc, parameter))
            .filter(|parameter| parameter["in"] == "path")
            .map(|parameter| {
                let name = parameter["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path}: a parameter without a name"));
                (name.to_owned(), parameter)
            })
            .collect();
        let template = template_parameters(&path);
        for name in &template {
            match declared.get(name) {
                None => problems.push(format!(
                    "{method} {path}: path parameter {{{name}}} is not declared"
                )),
                Some(parameter) if parameter["required"] != Value::Bool(true) => problems.push(
                    format!("{method} {path}: path parameter {name} must be required: true"),
                ),
                Some(parameter) if parameter.get("schema").is_none() => problems.push(format!(
                    "{method} {path}: path parameter {name} has no schema"
                )),
                Some(_) => {}
            }
        }
        for name in declared.keys() {
            if !template.contains(name) {
                problems.push(format!(
                    "{method} {path}: declares path parameter {name}, which the template lacks"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn operations_are_described() {
    let doc = document();
    let schemes: BTreeSet<&str> = doc["components"]["securitySchemes"]
        .as_object()
        .expect("components.securitySchemes")
        .keys()
        .map(String::as_str)
        .collect();
    for scheme in ["adminToken", "siteKey"] {
        assert!(
            schemes.contains(scheme),
            "components.securitySchemes lacks {scheme}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for ((method, path), operation) in operations(&doc) {
        let name = format!("{method} {path}");
        for field in ["operationId", "summary", "description"] {
            if operation[field].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{name}: no {field}"));
            }
        }
        if let Some(id) = operation["operationId"].as_str()
            && !ids.insert(id.to_owned())
        {
            problems.push(format!("{name}: operationId {id} is used twice"));
        }
        let responses = operation["responses"].as_object();
        let has_success = responses
            .into_iter()
            .flatten()
            .any(|(status, _)| status.starts_with('2'));
        if !has_success {
            problems.push(format!("{name}: no 2xx response"));
        }
        for (status, response) in responses.into_iter().flatten() {
            let valid = status.len() == 3
                && status
                    .parse::<u16>()
                    .is_ok_and(|code| (100..600).contains(&code));
            if !valid {
                problems.push(format!("{name}: response key {status:?} is not a status"));
            }
            if deref(&doc, response)["description"].as_str().is_none() {
                problems.push(format!("{name}: response {status} has no description"));
            }
        }
        match operation["security"].as_array() {
            None => problems.push(format!(
                "{name}: no `security` (give [] for a public route)"
            )),
            Some(requirements) => {
                for requirement in requirements {
                    for scheme in requirement
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        if !schemes.contains(scheme.as_str()) {
                            problems.push(format!("{name}: unknown security scheme {scheme}"));
                        }
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn error_schema_is_shared() {
    let doc = document();
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    let inner = &error["properties"]["error"];
    assert_eq!(inner["required"], serde_json::json!(["code", "message"]));
    for field in ["code", "message", "field"] {
        assert!(
            inner["properties"][field]["type"] == "string",
            "Error.error.{field} must be a string"
        );
    }
}

#[test]
fn template_parameters_are_parsed() {
    assert_eq!(
        template_parameters("/v1/sites/{siteId}/keys/{keyId}"),
        vec!["siteId".to_owned(), "keyId".to_owned()]
    );
    assert!(template_parameters("/healthz").is_empty());
}

/// The schema at `#/components/schemas/{name}`.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "components.schemas.{name} is missing");
    schema
}

/// The member names of an object schema (`properties`).
fn members(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The names of a JSON object's members.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

/// The fields of a `deny_unknown_fields` struct, from the error serde gives for an unknown
/// member (``unknown field `x`, expected one of `a`, `b` ``); `None` when `T` does not refuse
/// unknown members.
fn fields_of<T: DeserializeOwned>() -> Option<BTreeSet<String>> {
    const PROBE: &str = "zzNotAMember";
    let error = match serde_json::from_value::<T>(json!({ PROBE: 0 })) {
        Ok(_) => return None,
        Err(e) => e.to_string(),
    };
    if !error.contains(&format!("unknown field `{PROBE}`")) {
        return None;
    }
    // Backticked names are at odd positions; the first one is the probe.
    Some(
        error
            .split('`')
            .skip(1)
            .step_by(2)
            .skip(1)
            .map(str::to_owned)
            .collect(),
    )
}

fn query_parameters(doc: &Value, method: &str, path: &str) -> BTreeSet<String> {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| deref(doc, p))
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().expect("parameter name").to_owned())
        .collect()
}

#[test]
fn request_schemas_are_the_parsed_structs() {
    let doc = document();
    let keys_of_subscribe = &schema(&doc, "SubscribeRequest")["properties"]["keys"]["anyOf"][0];
    let cases: Vec<(&str, &Value, Option<BTreeSet<String>>)> = vec![
        (
            "NewSite",
            schema(&doc, "NewSite"),
            fields_of::<sites::NewSite>(),
        ),
        (
            "SitePatch",
            schema(&doc, "SitePatch"),
            fields_of::<sites::SitePatch>(),
        ),
        (
            "ApnsCredentialsInput",
            schema(&doc, "ApnsCredentialsInput"),
            fields_of::<sites::ApnsBody>(),
        ),
        (
            "FcmCredentialsInput",
            schema(&doc, "FcmCredentialsInput"),
            fields_of::<sites::FcmBody>(),
        ),
        (
            "SubscribeRequest",
            schema(&doc, "SubscribeRequest"),
            fields_of::<subscribers::SubscribeBody>(),
        ),
        (
            "SubscribeRequest.keys",
            keys_of_subscribe,
            fields_of::<subscribers::KeysBody>(),
        ),
        (
            "UnsubscribeRequest",
            schema(&doc, "UnsubscribeRequest"),
            fields_of::<subscribers::UnsubscribeBody>(),
        ),
        (
            "NewPush",
            schema(&doc, "NewPush"),
            fields_of::<pushes::NewPush>(),
        ),
        (
            "Audience",
            schema(&doc, "Audience"),
            fields_of::<pushes::AudienceBody>(),
        ),
        (
            "DirectSend",
            schema(&doc, "DirectSend"),
            fields_of::<notifications::DirectSend>(),
        ),
        (
            "DirectTarget",
            schema(&doc, "DirectTarget"),
            fields_of::<notifications::DirectTarget>(),
        ),
        (
            "RawSubscription",
            schema(&doc, "RawSubscription"),
            fields_of::<notifications::RawSubscription>(),
        ),
        (
            "SubscriptionKeys",
            schema(&doc, "SubscriptionKeys"),
            fields_of::<notifications::RawKeys>(),
        ),
        (
            "RealtimeTokenRequest",
            schema(&doc, "RealtimeTokenRequest"),
            fields_of::<realtime::TokenRequest>(),
        ),
        (
            "PublishRequest",
            schema(&doc, "PublishRequest"),
            fields_of::<realtime::PublishRequest>(),
        ),
        (
            "FallbackRequest",
            schema(&doc, "FallbackRequest"),
            fields_of::<realtime::FallbackBody>(),
        ),
        (
            "FallbackPush",
            schema(&doc, "FallbackPush"),
            fields_of::<realtime::FallbackPush>(),
        ),
        (
            "EventRequest",
            schema(&doc, "EventRequest"),
            fields_of::<events::EventBody>(),
        ),
        (
            "DeadLetterReplay",
            schema(&doc, "DeadLetterReplay"),
            fields_of::<dead_letters::ReplayRequest>(),
        ),
    ];
    let mut problems = Vec::new();
    for (name, schema, fields) in cases {
        let Some(fields) = fields else {
            problems.push(format!(
                "{name}: its struct no longer refuses unknown fields"
            ));
            continue;
        };
        if schema["additionalProperties"] != Value::Bool(false) {
            problems.push(format!(
                "{name}: the handler refuses unknown members; say additionalProperties: false"
            ));
        }
        let documented = members(schema);
        if documented != fields {
            problems.push(format!(
                "{name}: documented members {documented:?}, the handler parses {fields:?}"
            ));
        }
    }
    for (method, path, fields) in [
        (
            "get",
            "/v1/sites/{siteId}/pushes",
            fields_of::<pushes::ListQuery>(),
        ),
        (
            "post",
            "/v1/pushes/{pushId}/send",
            fields_of::<pushes::SendQuery>(),
        ),
        (
            "get",
            "/v1/sites/{siteId}/presence",
            fields_of::<realtime::PresenceQuery>(),
        ),
        (
            "get",
            "/v1/sites/{siteId}/realtime/stats",
            fields_of::<realtime::StatsQuery>(),
        ),
        ("get", "/v1/sites", fields_of::<site_list::SiteListQuery>()),
        (
            "get",
            "/v1/sites/{siteId}/dead-letters",
            fields_of::<dead_letters::DeadLetterQuery>(),
        ),
        (
            "get",
            "/v1/dead-letters",
            fields_of::<dead_letters::DeadLetterQuery>(),
        ),
    ] {
        let documented = query_parameters(&doc, method, path);
        if Some(&documented) != fields.as_ref() {
            problems.push(format!(
                "{method} {path}: documented query parameters {documented:?}, the handler \
                 parses {fields:?} (unknown ones refused)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `Content::into_push` with `options`, for a push of a fresh site id.
fn with_options(options: Value) -> Result<Push, pushservice_pushapi::error::ApiError> {
    pushes::Content {
        title: "t".to_owned(),
        options: Some(options),
        launch_url: None,
        priority: None,
        time_to_live: None,
    }
    .into_push(ObjectId::new())
}

/// The list after `known: ` in the message of a refused unknown option or action field.
fn known_list(message: &str) -> BTreeSet<String> {
    message
        .split_once("known: ")
        .unwrap_or_else(|| panic!("no list of known names in {message:?}"))
        .1
        .split(", ")
        .map(str::to_owned)
        .collect()
}

#[test]
fn notification_options_are_those_the_handlers_accept() {
    let doc = document();
    let options = schema(&doc, "NotificationOptionsInput");
    assert_eq!(options["additionalProperties"], Value::Bool(false));
    let error = with_options(json!({ "zzNotAnOption": 1 })).expect_err("unknown option");
    assert_eq!(error.field.as_deref(), Some("options.zzNotAnOption"));
    assert_eq!(
        members(options),
        known_list(&error.message),
        "NotificationOptionsInput and the options the handlers know differ"
    );

    let action = schema(&doc, "NotificationAction");
    assert_eq!(
        action["additionalProperties"],
        Value::Bool(false),
        "unknown action fields are refused; say additionalProperties: false"
    );
    let error =
        with_options(json!({ "actions": [{ "zzNotAField": 1 }] })).expect_err("unknown field");
    assert_eq!(
        error.field.as_deref(),
        Some("options.actions[0].zzNotAField")
    );
    assert_eq!(
        members(action),
        known_list(&error.message),
        "NotificationAction and the action fields the handlers know differ"
    );
    let error = with_options(json!({ "actions": ["x"] })).expect_err("not an object");
    assert_eq!(error.field.as_deref(), Some("options.actions[0]"));

    let dir = &options["properties"]["dir"];
    let values = dir["enum"].as_array().expect("options.dir has an enum");
    for value in values {
        with_options(json!({ "dir": value }))
            .unwrap_or_else(|e| panic!("documented dir {value} is refused: {}", e.message));
    }
    for refused in [json!("sideways"), Value::Null, json!(1)] {
        let error = with_options(json!({ "dir": refused })).expect_err("bad dir");
        assert_eq!(error.field.as_deref(), Some("options.dir"));
        assert!(
            !values.contains(&refused),
            "dir {refused} is refused but documented"
        );
    }
}

fn a_push() -> Push {
    let options = Notification {
        body: Some("b".into()),
        icon: Some("https://x.example/i.png".into()),
        image: Some("https://x.example/im.png".into()),
        badge: Some("https://x.example/b.png".into()),
        vibration: Some(json!([100, 50])),
        silent: Some(false),
        renotify: Some(true),
        require_interaction: Some(true),
        dir: Some("ltr".into()),
        tag: Some("t".into()),
        actions: vec![NotificationAction {
            action: Some("a".into()),
            title: Some("A".into()),
            icon: Some("https://x.example/a.png".into()),
            url: Some("https://x.example/a".into()),
        }],
    };
    let mut push = Push::new(ObjectId::new(), "t".into(), options);
    push.launch_url = Some("https://x.example/".into());
    push.audience = Some(Audience {
        external_ids: vec!["u1".into()],
        tags: vec!["news".into()],
    });
    push.fanout = Some(FanoutProgress {
        produced: 3,
        skipped: 1,
        canceled: 2,
        ..FanoutProgress::default()
    });
    push.failure_reason = Some("why".into());
    push.delivery_failures = vec![ReasonCount {
        reason: "r".into(),
        count: 1,
    }];
    push.canceled_at = Some(pushservice_model::DateTime::now());
    push
}

/// `view`'s members are exactly `schema`'s, and it has every required one.
fn check_view(problems: &mut Vec<String>, name: &str, view: &Value, schema: &Value) {
    let (answered, documented) = (keys(view), members(schema));
    if answered != documented {
        problems.push(format!(
            "{name}: the API answers {answered:?}, the document has {documented:?}"
        ));
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().expect("required names are strings");
        if !answered.contains(required) {
            problems.push(format!("{name}: {required} is required but not answered"));
        }
    }
}

#[test]
fn views_answer_the_documented_members() {
    let doc = document();
    let mut problems = Vec::new();

    let view = views::push(&a_push(), None);
    let push = schema(&doc, "Push");
    check_view(&mut problems, "Push", &view, push);
    check_view(
        &mut problems,
        "Push.totals",
        &view["totals"],
        schema(&doc, "Totals"),
    );
    check_view(
        &mut problems,
        "Push.fanout",
        &view["fanout"],
        &push["properties"]["fanout"]["anyOf"][0],
    );
    check_view(
        &mut problems,
        "Push.options",
        &view["options"],
        schema(&doc, "NotificationOptions"),
    );
    check_view(
        &mut problems,
        "Push.options.actions[]",
        &view["options"]["actions"][0],
        schema(&doc, "NotificationAction"),
    );
    check_view(
        &mut problems,
        "Push.audience",
        &view["audience"],
        schema(&doc, "Audience"),
    );
    check_view(
        &mut problems,
        "Push.deliveryFailures[]",
        &view["deliveryFailures"][0],
        &push["properties"]["deliveryFailures"]["items"],
    );

    let mut site = Site::new(
        "mailto:ops@x.example".into(),
        "public".into(),
        "private".into(),
    );
    site.api_keys.push(ApiKey {
        id: "0123abcd".into(),
        hash: "h".into(),
        created_at: None,
    });
    site.apns = Some(ApnsCredentials {
        team_id: "T".into(),
        key_id: "K".into(),
        private_key: "secret".into(),
        topic: "app".into(),
        sandbox: false,
    });
    site.fcm = Some(FcmCredentials {
        service_account: json!({ "project_id": "p", "client_email": "e@p" }).to_string(),
    });
    let view = views::site(&site);
    let site_schema = schema(&doc, "Site");
    check_view(&mut problems, "Site", &view, site_schema);
    let properties = &site_schema["properties"];
    check_view(
        &mut problems,
        "Site.apiKeys[]",
        &view["apiKeys"][0],
        &properties["apiKeys"]["items"],
    );
    check_view(
        &mut problems,
        "Site.apns",
        &view["apns"],
        &properties["apns"]["anyOf"][0],
    );
    check_view(
        &mut problems,
        "Site.fcm",
        &view["fcm"],
        &properties["fcm"]["anyOf"][0],
    );
    site.fcm = Some(FcmCredentials {
        service_account: "{}".into(),
    });
    check_view(
        &mut problems,
        "Site.fcm (unusable)",
        &views::site(&site)["fcm"],
        &properties["fcm"]["anyOf"][1],
    );
    let secrets = views::site(&site).to_string();
    assert!(
        !secrets.contains("private") && !secrets.contains("secret"),
        "a site view shows a secret: {secrets}"
    );

    let registered = views::registered(
        &ObjectId::new().to_hex(),
        "web",
        pushservice_store::Registered {
            id: ObjectId::new(),
            created: true,
        },
    );
    check_view(
        &mut problems,
        "RegisteredSubscriber",
        &registered,
        schema(&doc, "RegisteredSubscriber"),
    );

    // The console's views.
    let summary = site_list::site_with_counts(&site, site_list::SubscriberCounts::default());
    check_view(
        &mut problems,
        "SiteSummary",
        &summary,
        schema(&doc, "SiteSummary"),
    );
    check_view(
        &mut problems,
        "SiteSummary.subscribers",
        &summary["subscribers"],
        schema(&doc, "SubscriberCounts"),
    );
    let mut letters = pushservice_control::dlq::DeadLetterStats::default();
    letters.by_reason.insert("HTTP 400".into(), 2);
    letters.by_push.insert(ObjectId::new().to_hex(), 2);
    let dead = dead_letters::stats_view(
        "push-dlq",
        &pushservice_control::dlq::Filter::default(),
        &letters,
    );
    let dead_schema = schema(&doc, "DeadLetterSummary");
    check_view(&mut problems, "DeadLetterSummary", &dead, dead_schema);
    check_view(
        &mut problems,
        "DeadLetterSummary.reasons[]",
        &dead["reasons"][0],
        &dead_schema["properties"]["reasons"]["items"],
    );
    check_view(
        &mut problems,
        "DeadLetterSummary.pushes[]",
        &dead["pushes"][0],
        &dead_schema["properties"]["pushes"]["items"],
    );
    check_view(
        &mut problems,
        "DeadLetterReplayResult",
        &dead_letters::replay_view(&Default::default(), false),
        schema(&doc, "DeadLetterReplayResult"),
    );
    let presence = pushservice_store::PresenceSnapshot {
        id: "g:s".into(),
        gateway: "g".into(),
        site_id: "s".into(),
        expires_at: pushservice_model::DateTime::now(),
        connections: 1,
        users: vec![],
        channels: vec![pushservice_store::ChannelPresence {
            name: "room:1".into(),
            connections: 1,
            users: vec!["u".into()],
        }],
    };
    let online = channels::channels_view(&[presence]);
    let online_schema = schema(&doc, "RealtimeChannels");
    check_view(&mut problems, "RealtimeChannels", &online, online_schema);
    check_view(
        &mut problems,
        "RealtimeChannels.channels[]",
        &online["channels"][0],
        &online_schema["properties"]["channels"]["items"],
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every source file of the crate, with its path.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut out,
    );
    out
}

/// The top-level arguments of a call, from just after its `(`; string literals and nested
/// brackets are skipped over.
fn call_arguments(text: &str) -> Vec<&str> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut start, mut out) = (0, Vec::new());
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => {
                out.push(text[start..i].trim());
                return out;
            }
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// Every error code the sources can answer: the code argument of `ApiError::new(status,
/// "code", ..)` and `ApiError::unusable(field, "code", ..)`, and `code: "..."` in
/// `ApiError` literals.
fn answered_codes() -> BTreeMap<String, String> {
    let literal = |argument: &str| {
        argument
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .map(str::to_owned)
    };
    let mut codes = BTreeMap::new();
    for (path, text) in sources() {
        for call in ["ApiError::new(", "ApiError::unusable("] {
            for (at, _) in text.match_indices(call) {
                let arguments = call_arguments(&text[at + call.len()..]);
                if let Some(code) = arguments.get(1).and_then(|a| literal(a)) {
                    codes.insert(code, path.clone());
                }
            }
        }
        for (at, _) in text.match_indices("code: \"") {
            let rest = &text[at + "code: \"".len()..];
            if let Some(end) = rest.find('"') {
                codes.insert(rest[..end].to_owned(), path.clone());
            }
        }
    }
    codes
}

#[test]
fn error_codes_are_those_the_sources_answer() {
    let doc = document();
    let description = schema(&doc, "Error")["description"]
        .as_str()
        .expect("Error has a description");
    let (_, list) = description
        .split_once("machine-readable:")
        .expect("the Error description lists the codes after `machine-readable:`");
    let documented: BTreeSet<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    let answered = answered_codes();
    for expected in [
        "invalid_field",
        "invalid_query",
        "method_not_allowed",
        "not_found",
    ] {
        assert!(
            answered.contains_key(expected),
            "the source scan misses {expected}: {answered:?}"
        );
    }
    let undocumented: Vec<String> = answered
        .iter()
        .filter(|(code, _)| !documented.contains(*code))
        .map(|(code, path)| format!("{code} ({path})"))
        .collect();
    let unanswered: Vec<&String> = documented
        .iter()
        .filter(|code| !answered.contains_key(*code))
        .collect();
    assert!(
        undocumented.is_empty() && unanswered.is_empty(),
        "the Error schema's codes and the sources' differ.\n  answered, not documented: \
         {undocumented:?}\n  documented, never answered: {unanswered:?}"
    );
}

#[test]
fn error_responses_are_json_errors() {
    let doc = document();
    let mut problems = Vec::new();
    for ((method, path), operation) in operations(&doc) {
        // Readiness answers plain text by design (as the other daemons' `/readyz`).
        if path == "/readyz" {
            continue;
        }
        for (status, response) in operation["responses"].as_object().into_iter().flatten() {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let response = deref(&doc, response);
            let content = response["content"].as_object();
            let only_json = content.is_some_and(|c| c.len() == 1)
                && response["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/Error";
            if !only_json {
                problems.push(format!(
                    "{method} {path} {status}: errors are JSON `Error`s, and only that"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn refusals_are_documented_where_they_can_happen() {
    let doc = document();
    let mut problems = Vec::new();
    for ((method, path), operation) in operations(&doc) {
        let responses = operation["responses"].as_object();
        let has = |status: &str| responses.is_some_and(|r| r.contains_key(status));
        let mut need = Vec::new();
        let ids = ["siteId", "pushId", "subscriberId"];
        if template_parameters(&path)
            .iter()
            .any(|p| ids.contains(&p.as_str()))
        {
            need.push(("400", "a malformed id in the path"));
        }
        if !query_parameters(&doc, &method.to_lowercase(), &path).is_empty() {
            need.push(("400", "an invalid query string"));
        }
        if operation.get("requestBody").is_some() {
            need.push(("400", "a body that does not parse"));
            need.push(("413", "a body over the limit"));
            need.push(("415", "a body that is not JSON"));
        }
        let secured = operation["security"].as_array().is_some_and(|r| {
            r.iter()
                .any(|s| s.as_object().is_some_and(|s| !s.is_empty()))
        });
        if secured {
            need.push(("401", "wrong credentials"));
            need.push(("403", "another site's key"));
        }
        for (status, why) in need {
            if !has(status) {
                problems.push(format!("{method} {path}: no {status} response ({why})"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn limits_are_the_handlers() {
    let doc = document();
    let max_ttl = json!(pushes::MAX_TIME_TO_LIVE);
    for name in ["NewPush", "DirectSend"] {
        assert_eq!(
            schema(&doc, name)["properties"]["timeToLive"]["maximum"],
            max_ttl,
            "{name}.timeToLive maximum"
        );
    }
    assert_eq!(
        schema(&doc, "DirectSend")["properties"]["targets"]["maxItems"],
        json!(notifications::MAX_TARGETS),
        "DirectSend.targets maxItems"
    );
    for name in ["NewSite", "SitePatch"] {
        assert_eq!(
            schema(&doc, name)["properties"]["allowedOrigins"]["maxItems"],
            json!(pushservice_control::sites::MAX_ALLOWED_ORIGINS),
            "{name}.allowedOrigins maxItems"
        );
    }
    let limit = &doc["paths"]["/v1/sites"]["get"]["parameters"][0];
    assert_eq!(limit["name"], json!("limit"));
    assert_eq!(
        limit["schema"]["maximum"],
        json!(site_list::MAX_LIMIT),
        "GET /v1/sites limit maximum"
    );
    let files: Vec<&str> = pushservice_pushapi::routes::console::FILES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    assert_eq!(
        doc["paths"]["/console/{file}"]["get"]["parameters"][0]["schema"]["enum"],
        json!(files),
        "the console files documented are those served"
    );
}
