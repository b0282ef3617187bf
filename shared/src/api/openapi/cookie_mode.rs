//! The document's side of cookie mode (`crate::http::token_transport`):
//! the `X-Token-Transport` header on the operations that give or take a
//! refresh token, and the `Set-Cookie` their answers may carry.

use serde_json::{Value, json};

/// The operations that accept `X-Token-Transport: cookie`.
pub const OPERATIONS: [(&str, &str); 5] = [
    ("/v1/auth/login", "post"),
    ("/v1/auth/mfa/verify", "post"),
    ("/v1/auth/passkey/finish", "post"),
    ("/v1/auth/refresh", "post"),
    ("/v1/auth/logout", "post"),
];

pub(super) fn describe(doc: &mut Value) {
    for (path, method) in OPERATIONS {
        let pointer = format!("/paths/{}/{method}", path.replace('/', "~1"));
        let Some(op) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            continue;
        };
        let takes_token = matches!(path, "/v1/auth/refresh" | "/v1/auth/logout");
        let description = if takes_token {
            "`cookie`: the refresh token is the `__Host-refresh` cookie (`refresh` on the plain-HTTP local server), read when the body has no `refresh_token`; a refresh answers the new one the same way. Without this header the cookie is ignored; two cookies of that name are refused (401)."
        } else {
            "`cookie`: the refresh token is set as the `__Host-refresh` cookie (HttpOnly, Secure, SameSite=Strict, Path=/; on the plain-HTTP local server `refresh`, without Secure) and left out of the body. Default `body`."
        };
        let parameters = op.entry("parameters").or_insert_with(|| json!([]));
        if let Some(parameters) = parameters.as_array_mut() {
            parameters.push(json!({
                "name": "X-Token-Transport",
                "in": "header",
                "required": false,
                "description": description,
                "schema": {"type": "string", "enum": ["body", "cookie"]}
            }));
        }
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            let what = match status.as_str() {
                "200" => {
                    "Cookie mode: the refresh token, `__Host-refresh=…; Max-Age=<refresh_expires_in>; Path=/; HttpOnly; Secure; SameSite=Strict`"
                }
                "204" => "Cookie mode: deletes the refresh cookie (`Max-Age=0`)",
                "401" if takes_token => {
                    "Cookie mode: deletes the dead refresh cookie (`Max-Age=0`)"
                }
                _ => continue,
            };
            if let Some(response) = response.as_object_mut() {
                let headers = response.entry("headers").or_insert_with(|| json!({}));
                headers["Set-Cookie"] = json!({"description": what, "schema": {"type": "string"}});
            }
        }
    }
}
