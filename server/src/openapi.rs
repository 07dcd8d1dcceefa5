//! The OpenAPI 3.1 document, built from the route table and the handlers' types (their
//! JSON Schemas come from schemars), so it cannot drift from what the server does.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::api::{Access, ErrorBody, Route};

pub fn document(routes: &[Route]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert(
            "x-nightscape-access".into(),
            json!(format!("{:?}", r.access).to_lowercase()),
        );
        if r.access != Access::Public {
            op.insert("security".into(), json!([{"bearer": []}, {"session": []}]));
        }
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name.trim_start_matches('*'), "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(query) = r.query {
            let schema = query(&mut generator);
            let props = schema
                .get("properties")
                .and_then(|p| p.as_object())
                .cloned()
                .unwrap_or_default();
            for (name, prop) in props {
                let description = prop.get("description").cloned().unwrap_or(Value::Null);
                params.push(json!({"name": name, "in": "query", "required": false, "schema": prop, "description": description}));
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(req) = r.request {
            let schema = req(&mut generator);
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let mut content = Map::new();
        if let Some(resp) = r.response {
            content.insert(
                "application/json".into(),
                json!({"schema": resp(&mut generator)}),
            );
        }
        for media in r.produces {
            content.insert((*media).into(), json!({}));
        }
        let ok = if content.is_empty() {
            json!({"description": "success"})
        } else {
            json!({"description": "success", "content": content})
        };
        let mut err_content = Map::new();
        err_content.insert(
            "application/json".into(),
            json!({"schema": {"type": "object", "properties": {"error": error}}}),
        );
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
        if r.page {
            // A page answers a visitor who is not logged in with the login page's address,
            // and a form's problem with the page again.
            err_content.insert("text/html".into(), json!({}));
            responses.insert(
                "303".into(),
                json!({"description": "to the login page, or on after a form"}),
            );
        } else if r.response.is_none() {
            responses.insert(
                "204".into(),
                json!({"description": "done; nothing to answer"}),
            );
        }
        responses.insert(
            "4XX".into(),
            json!({"description": "the problem, and what to fix", "content": err_content}),
        );
        op.insert("responses".into(), Value::Object(responses));
        let path = r.path.replace("{*", "{");
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(r.method.as_str().to_lowercase(), Value::Object(op));
        }
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Nightscape",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A change (POST, PUT, DELETE) sent with an `Idempotency-Key` header (1 to 100 visible ASCII characters) is made at most once per user and key: the same request again gets the first answer again (`idempotent-replayed: true`); the key with another request gets 422 `idempotency-key-reused`; when the change was made but its answer lost, 409 `already-applied` names its audit entry; while the first still runs, 409 `in-progress` with Retry-After."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::api::SESSION_COOKIE}
            }
        }
    })
}
