//! The OpenAPI document is a contract: every status a route can answer is in it, each error as
//! `application/problem+json`, and request schemas carry the limits the server enforces. Routes
//! document what only they answer (their successes, 404s and 409s); the answers every route
//! shares because of the layers around it (authentication, extractors, load shedding, the
//! request timeout) are added here, once, from what each operation has.

use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder};

use tenancy_core::PROBLEM_CONTENT_TYPE;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenancy registry", description = "Database-per-tenant control plane for PostgreSQL: onboard, suspend, resume, re-tier and delete tenants."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Onboarding and the tenant lifecycle"),
        (name = "operations", description = "Asynchronous work"),
        (name = "backups", description = "Encrypted per-tenant backups, their export, and restores"),
        (name = "routing", description = "For services that run the router"),
        (name = "quotas", description = "Product quotas: counting usage against the tenant's tier"),
        (name = "settings", description = "Per-tenant settings (secrets encrypted at rest) and features"),
        (name = "servers", description = "Database servers"),
        (name = "audit", description = "Audit log"),
        (name = "zitadel", description = "ZITADEL organization events and sync"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served: the routes' own answers completed with the shared ones, and the
/// request constraints no derive can state, among them the configured tiers (`tiers`).
/// Serialized once, at start-up.
pub fn finish<'a>(
    mut openapi: utoipa::openapi::OpenApi,
    tiers: impl IntoIterator<Item = &'a str>,
) -> Value {
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_shared_answers(operation);
            problems_as_problem_json(operation);
        }
    }
    let mut document = serde_json::to_value(&openapi).expect("the OpenAPI document serializes");
    constrain_create_tenant(&mut document);
    constrain_put_setting(&mut document);
    if let Some(tier) = document.pointer_mut("/components/schemas/Tier") {
        tier["enum"] = tiers.into_iter().collect();
    }
    document
}

/// Adds, where a route did not document them itself, the answers every route of its kind gives.
fn add_shared_answers(operation: &mut Operation) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let in_path = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let in_query = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let has_body = operation.request_body.is_some();
    // The webhook is signed instead (`security: [{}]`); it answers 401 for a bad signature.
    let bearer = operation.security.as_ref().is_none_or(|requirements| {
        requirements
            .iter()
            .all(|r| serde_json::to_value(r).is_ok_and(|v| v != json!({})))
    });

    let mut shared: Vec<(&str, &str)> = Vec::new();
    if in_path || in_query || has_body {
        shared.push((
            "400",
            "`invalid_request`: a path or query parameter outside its schema, or a body that is \
             not JSON",
        ));
    }
    shared.push((
        "401",
        if bearer {
            "`unauthorized`: no bearer token, or one that does not verify"
        } else {
            "`unauthorized`: no valid signature"
        },
    ));
    if bearer {
        shared.push(("403", "`forbidden`: the caller's roles do not allow this"));
    }
    if in_path {
        shared.push((
            "404",
            "`not_found`: no such resource (or one the caller may not see)",
        ));
    }
    if has_body {
        shared.push(("413", "`body_too_large`: the body is over the limit"));
        shared.push((
            "415",
            "`unsupported_media_type`: the body is not `application/json`",
        ));
        shared.push(("422", "`validation_failed`: the body breaks its schema"));
    }
    shared.push((
        "500",
        "`internal`: a bug; the cause is in the registry's logs",
    ));
    shared.push((
        "503",
        "`overloaded` (too many requests in flight), `unavailable` (the registry database), \
         `zitadel_unavailable` (the identity provider): try again after `Retry-After`",
    ));
    shared.push((
        "504",
        "`timeout`: the request took longer than the registry allows",
    ));
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description));
    }
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_CONTENT_TYPE,
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "Problem",
            )))),
        )
        .into()
}

/// Routes document errors as `body = Problem`, which utoipa types `application/json`; they are
/// served as `application/problem+json`.
fn problems_as_problem_json(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_problem = response.content.get("application/json").is_some_and(
            |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")),
        );
        if is_problem {
            let content = response
                .content
                .shift_remove("application/json")
                .expect("checked above");
            response
                .content
                .insert(PROBLEM_CONTENT_TYPE.to_owned(), content);
        }
    }
}

/// `POST /v1/tenants` takes `org_id` or `create_org`, not both, names the first admin once
/// (`admin_email` or `create_org.admin`), and gives a `parent_org_id` to clients only. The
/// handler refuses the same requests.
fn constrain_create_tenant(document: &mut Value) {
    let Some(schema) = document.pointer_mut("/components/schemas/CreateTenant") else {
        return;
    };
    schema["oneOf"] = json!([{"required": ["org_id"]}, {"required": ["create_org"]}]);
    // A client names its agency; an agency or a standalone tenant has none (null is none).
    let parent =
        json!({"required": ["parent_org_id"], "properties": {"parent_org_id": {"type": "string"}}});
    schema["allOf"] = json!([
        {"not": {"required": ["kind"], "properties": {"kind": {"const": "client"}}, "not": parent}},
        {"not": {"allOf": [
            {"required": ["kind"], "properties": {"kind": {"enum": ["agency", "standalone"]}}},
            parent,
        ]}},
    ]);
    schema["not"] = json!({
        "required": ["admin_email", "create_org"],
        "properties": {"create_org": {"required": ["admin"]}}
    });
}

/// A setting's value is of its type, at most 16 KiB (a `json` value's size, as compact JSON, is
/// checked by the handler); `features.<name>` keys take `bool` only (checked by the handler).
fn constrain_put_setting(document: &mut Value) {
    let Some(schema) = document.pointer_mut("/components/schemas/PutSetting") else {
        return;
    };
    let max = tenancy_core::MAX_SETTING_BYTES;
    let typed = |types: &[&str], value: Value| json!({"properties": {"type": {"enum": types}, "value": value}});
    schema["oneOf"] = json!([
        typed(
            &["string", "secret"],
            json!({"type": "string", "maxLength": max})
        ),
        typed(&["number"], json!({"type": "number"})),
        typed(&["bool"], json!({"type": "boolean"})),
        typed(&["json"], json!({"not": {"type": "null"}})),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_the_shared_answers_as_problems() {
        let (_, openapi) = super::super::api();
        let document = finish(openapi, ["free", "business"]);
        assert_eq!(
            document["components"]["schemas"]["Tier"]["enum"],
            json!(["free", "business"])
        );
        let mut operation_ids = std::collections::BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for status in ["401", "500", "503", "504"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let content = response["content"].as_object();
                        assert!(
                            content.is_some_and(|c| c.keys().eq([PROBLEM_CONTENT_TYPE])),
                            "{method} {path} {status}: {response}"
                        );
                    }
                }
                assert!(
                    operation_ids.insert(operation["operationId"].to_string()),
                    "{method} {path}: a unique operationId"
                );
            }
        }
        let create = &document["components"]["schemas"]["CreateTenant"];
        assert!(create["oneOf"].is_array() && create["not"].is_object());
    }
}
