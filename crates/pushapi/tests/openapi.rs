//! The OpenAPI document served at `/openapi.json` describes the router's routes exactly.
//!
//! Checked offline, without MongoDB or Kafka: the embedded document parses as OpenAPI 3.1.0;
//! its operations are exactly `routes::ROUTES` (the list the router is built from), both ways;
//! every `$ref` resolves; every path parameter of a template is declared by each operation of
//! that path (and none is declared that the template lacks); every operation has an id, a
//! summary, a description, a success response and only known security schemes.
//!
//! Not checked here: sending requests through `routes::router` itself. It needs an
//! `AppState`, whose `Store` can only be made by `Store::connect`, which pings MongoDB.

use std::collections::{BTreeMap, BTreeSet};

use pushservice_pushapi::routes::ROUTES;
use pushservice_pushapi::routes::static_files::OPENAPI;
use serde_json::Value;

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
