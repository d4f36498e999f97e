//! The agent's REST API (contract §7.1): routes, token check, error bodies, `wait=true`.
//!
//! Paths and answers match IPA's werkzeug application: strict trailing slashes (a missing slash
//! gets a 308 redirect), `{"faultcode", "faultstring"}` error bodies, HTTP 200 for command results
//! whether they succeeded or failed.

use super::executor::{Executor, Refusal};
use super::registry::Params;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Ironic sends whole nodes and configdrives (up to 64 MiB, base64) in command bodies.
const MAX_BODY: usize = 128 * 1024 * 1024;
const DOCS_URL: &str = "https://docs.openstack.org/ironic-python-agent";
const MEDIA_TYPE: &str = "application/vnd.openstack.ironic-python-agent.v1+json";

pub type Reply = Response<Full<Bytes>>;

/// Routes requests to the executor.
pub struct Router {
    executor: Arc<Executor>,
    scheme: &'static str,
}

/// What a path means.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Root,
    V1,
    Status,
    Commands,
    Command(&'a str),
    /// The same path with a trailing slash exists.
    AddSlash,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    let rest = path
        .strip_prefix("/v1")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(path);
    match (path, rest) {
        ("/", _) => Route::Root,
        ("/v1/", _) => Route::V1,
        ("/v1", _) => Route::AddSlash,
        (_, "/status") => Route::Status,
        (_, "/commands/") => Route::Commands,
        (_, "/commands") => Route::AddSlash,
        (_, r) => match r.strip_prefix("/commands/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Route::Command(id),
            _ => Route::NotFound,
        },
    }
}

impl Router {
    pub fn new(executor: Arc<Executor>, tls: bool) -> Self {
        Self {
            executor,
            scheme: if tls { "https" } else { "http" },
        }
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Reply
    where
        B: hyper::body::Body + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let query = parse_query(req.uri().query());
        let reply = self.dispatch(req, &query).await;
        tracing::info!("{method} {path} -> {}", reply.status().as_u16());
        reply
    }

    async fn dispatch<B>(&self, req: Request<B>, query: &HashMap<String, String>) -> Reply
    where
        B: hyper::body::Body + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let root = self.url_root(&req);
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (route(&path), &method) {
            (Route::AddSlash, _) => redirect(&format!("{path}/"), req.uri().query()),
            (Route::NotFound, _) => werkzeug_error(StatusCode::NOT_FOUND),
            (Route::Root, &Method::GET) => json_reply(StatusCode::OK, &root_doc(&root)),
            (Route::V1, &Method::GET) => json_reply(StatusCode::OK, &v1_doc(&root)),
            (Route::Status, &Method::GET) => json_reply(
                StatusCode::OK,
                &json!({"started_at": self.executor.context().started_at, "version": crate::version()}),
            ),
            (Route::Commands | Route::Command(_), _) if !self.token_ok(query) => unauthorized(),
            (Route::Commands, &Method::GET) => {
                json_reply(StatusCode::OK, &json!({ "commands": self.executor.list() }))
            }
            (Route::Commands, &Method::POST) => self.run_command(req, query).await,
            (Route::Command(id), &Method::GET) => self.get_command(id, wants_wait(query)).await,
            _ => werkzeug_error(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    fn token_ok(&self, query: &HashMap<String, String>) -> bool {
        self.executor
            .context()
            .token_is_valid(query.get("agent_token").map(String::as_str))
    }

    /// `scheme://host[:port]` as the client addressed us (werkzeug's `url_root`).
    fn url_root<B>(&self, req: &Request<B>) -> String {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("{}://{host}", self.scheme)
    }

    async fn run_command<B>(&self, req: Request<B>, query: &HashMap<String, String>) -> Reply
    where
        B: hyper::body::Body + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return fault(
                    StatusCode::BAD_REQUEST,
                    &format!("400 Bad Request: reading the request body failed: {e}"),
                )
            }
        };
        let (name, params) = match parse_command(&body) {
            Ok(c) => c,
            Err(msg) => return fault(StatusCode::BAD_REQUEST, &msg),
        };
        match self.executor.execute(&name, params).await {
            Ok(result) if wants_wait(query) => {
                let done = self.executor.wait(&result.id).await.unwrap_or(result);
                json_reply(StatusCode::OK, &done)
            }
            Ok(result) => json_reply(StatusCode::OK, &result),
            Err(Refusal {
                status,
                faultstring,
            }) => fault(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &faultstring,
            ),
        }
    }

    async fn get_command(&self, id: &str, wait: bool) -> Reply {
        let found = if wait {
            self.executor.wait(id).await
        } else {
            self.executor.get(id)
        };
        match found {
            Some(r) => json_reply(StatusCode::OK, &r),
            None => fault(
                StatusCode::NOT_FOUND,
                &format!("Not found: Command Result with id {id} not found."),
            ),
        }
    }
}

/// The POST body: `{"name": "<ext>.<cmd>", "params": {...}}`, parsed whatever the Content-Type.
fn parse_command(body: &[u8]) -> Result<(String, Params), String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("400 Bad Request: Failed to decode JSON object: {e}"))?;
    let missing = || "400 Bad Request: Missing or invalid name or params".to_string();
    let name = v.get("name").and_then(Value::as_str).ok_or_else(missing)?;
    let params = v
        .get("params")
        .and_then(Value::as_object)
        .ok_or_else(missing)?;
    Ok((name.to_string(), params.clone()))
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `wait` counts only as the value `true`, in any case.
fn wants_wait(query: &HashMap<String, String>) -> bool {
    query
        .get("wait")
        .is_some_and(|w| w.eq_ignore_ascii_case("true"))
}

fn version_doc(root: &str) -> Value {
    json!({
        "id": "v1",
        "links": [
            {"href": format!("{root}/v1"), "rel": "self"},
            {"href": format!("{DOCS_URL}/"), "rel": "describedby", "type": "text/html"},
        ],
    })
}

fn root_doc(root: &str) -> Value {
    json!({
        "name": "OpenStack Ironic Python Agent API",
        "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
        "versions": [version_doc(root)],
        "default_version": version_doc(root),
    })
}

fn v1_doc(root: &str) -> Value {
    let mut doc = version_doc(root);
    let links = |res: &str| {
        json!([
            {"href": format!("{root}/v1/{res}"), "rel": "self"},
            {"href": format!("{root}/{res}"), "rel": "bookmark"},
        ])
    };
    doc["commands"] = links("commands");
    doc["status"] = links("status");
    doc["media_types"] = json!([{"base": "application/json", "type": MEDIA_TYPE}]);
    doc
}

pub fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Reply {
    let data = serde_json::to_vec(body).unwrap_or_else(|e| {
        format!(r#"{{"faultcode": "Server", "faultstring": "encoding the reply failed: {e}"}}"#)
            .into_bytes()
    });
    let mut resp = Response::new(Full::new(Bytes::from(data)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn fault(status: StatusCode, faultstring: &str) -> Reply {
    let faultcode = if status.is_server_error() {
        "Server"
    } else {
        "Client"
    };
    json_reply(
        status,
        &json!({"faultcode": faultcode, "faultstring": faultstring}),
    )
}

fn unauthorized() -> Reply {
    fault(StatusCode::UNAUTHORIZED, "401 Unauthorized: Token invalid.")
}

/// werkzeug's texts for routing errors.
fn werkzeug_error(status: StatusCode) -> Reply {
    let text = match status {
        StatusCode::NOT_FOUND => "404 Not Found: The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.",
        _ => "405 Method Not Allowed: The method is not allowed for the requested URL.",
    };
    fault(status, text)
}

fn redirect(location: &str, query: Option<&str>) -> Reply {
    let target = match query {
        Some(q) if !q.is_empty() => format!("{location}?{q}"),
        _ => location.to_string(),
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = header::HeaderValue::from_str(&target) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_ipa() {
        assert_eq!(route("/"), Route::Root);
        assert_eq!(route("/v1/"), Route::V1);
        assert_eq!(route("/v1"), Route::AddSlash);
        assert_eq!(route("/v1/status"), Route::Status);
        assert_eq!(route("/status"), Route::Status);
        assert_eq!(route("/v1/status/"), Route::NotFound);
        assert_eq!(route("/v1/commands/"), Route::Commands);
        assert_eq!(route("/commands/"), Route::Commands);
        assert_eq!(route("/v1/commands"), Route::AddSlash);
        assert_eq!(route("/v1/commands/abc"), Route::Command("abc"));
        assert_eq!(route("/commands/abc"), Route::Command("abc"));
        assert_eq!(route("/v1/commands/abc/def"), Route::NotFound);
        assert_eq!(route("/v1x/status"), Route::NotFound);
        assert_eq!(route("/v2/"), Route::NotFound);
    }

    #[test]
    fn command_bodies_are_validated() {
        let (name, params) =
            parse_command(br#"{"name": "clean.get_clean_steps", "params": {"node": {}}}"#).unwrap();
        assert_eq!(name, "clean.get_clean_steps");
        assert!(params.contains_key("node"));
        assert!(parse_command(b"{bad")
            .unwrap_err()
            .starts_with("400 Bad Request: Failed to decode JSON object"));
        for bad in [
            &br#"{"name": "x"}"#[..],
            br#"{"params": {}}"#,
            br#"{"name": "x", "params": []}"#,
            b"[]",
            br#""name""#,
        ] {
            assert_eq!(
                parse_command(bad).unwrap_err(),
                "400 Bad Request: Missing or invalid name or params"
            );
        }
    }

    #[test]
    fn wait_is_true_only_for_true() {
        let q = |v: &str| parse_query(Some(&format!("wait={v}")));
        assert!(wants_wait(&q("true")));
        assert!(wants_wait(&q("TRUE")));
        assert!(!wants_wait(&q("1")));
        assert!(!wants_wait(&parse_query(None)));
    }

    #[test]
    fn v1_doc_has_links_and_media_types() {
        let d = v1_doc("https://10.0.0.5:9999");
        assert_eq!(
            d["commands"][0]["href"],
            "https://10.0.0.5:9999/v1/commands"
        );
        assert_eq!(d["status"][1]["href"], "https://10.0.0.5:9999/status");
        assert_eq!(d["media_types"][0]["type"], MEDIA_TYPE);
        assert_eq!(
            root_doc("http://h")["default_version"]["links"][1]["href"],
            "https://docs.openstack.org/ironic-python-agent/"
        );
    }
}
