//! An in-process fake Ironic API on loopback: answers the version probe, lookup, heartbeat and
//! continue_inspection the way Ironic 39 does (bodies captured from a real conductor), records
//! every request, and can be scripted to fail.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NODE_UUID: &str = "62d0ce0e-001b-4019-b763-805e8828659d";
pub const TOKEN: &str = "ZSaFILGMVKWuT_9e6mtYOqlgT2UOiw5s6xg8tiCcgGg";

/// One request the agent sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub version: Option<String>,
    pub body: Value,
    pub status: u16,
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub body: Value,
}

impl Canned {
    pub fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }

    /// Ironic's error envelope with `faultstring`.
    pub fn error(status: u16, faultstring: &str) -> Self {
        let inner = json!({"faultcode": "Client", "faultstring": faultstring, "debuginfo": null})
            .to_string();
        Self {
            status,
            body: json!({ "error_message": inner }),
        }
    }
}

#[derive(Default)]
pub struct Script {
    pub lookups: VecDeque<Canned>,
    pub heartbeats: VecDeque<Canned>,
    pub inspections: VecDeque<Canned>,
    /// Lookups after the first successful one return `******`, as Ironic does.
    pub token_issued: bool,
    pub heartbeat_timeout: f64,
    pub max_version: String,
    pub recorded: Vec<Recorded>,
}

#[derive(Clone)]
pub struct FakeIronic {
    pub url: String,
    pub state: Arc<Mutex<Script>>,
}

impl FakeIronic {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Script {
            heartbeat_timeout: 2.0,
            max_version: "1.115".into(),
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn script<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn requests(&self, path_prefix: &str) -> Vec<Recorded> {
        self.script(|s| {
            s.recorded
                .iter()
                .filter(|r| r.path.starts_with(path_prefix))
                .cloned()
                .collect()
        })
    }

    /// Waits until at least `n` requests under `path_prefix` were answered with `status`.
    pub async fn wait_for(
        &self,
        path_prefix: &str,
        status: u16,
        n: usize,
        timeout: Duration,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got: Vec<Recorded> = self
                .requests(path_prefix)
                .into_iter()
                .filter(|r| r.status == status)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} x {status} on {path_prefix}; saw {:?}",
                self.requests(path_prefix)
                    .iter()
                    .map(|r| r.status)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    st: Arc<Mutex<Script>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let version = req
        .headers()
        .get("X-OpenStack-Ironic-API-Version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let raw = req.into_body().collect().await?.to_bytes();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let answer = {
        let mut s = st.lock().unwrap();
        let answer = route(&mut s, &method, &path, version.as_deref());
        s.recorded.push(Recorded {
            at: Instant::now(),
            method,
            path,
            query,
            version,
            body,
            status: answer.status,
        });
        answer
    };
    let data = if answer.body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(answer.body.to_string())
    };
    let mut resp = Response::new(Full::new(data));
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    Ok(resp)
}

fn route(s: &mut Script, method: &str, path: &str, version: Option<&str>) -> Canned {
    match (method, path) {
        ("GET", "/") => Canned::new(
            200,
            json!({"name": "OpenStack Ironic API", "default_version": {"id": "v1", "version": s.max_version, "min_version": "1.1", "status": "CURRENT"}}),
        ),
        ("GET", "/v1/lookup") => {
            if version.is_none() {
                return Canned::error(404, "Resource could not be found.");
            }
            if let Some(c) = s.lookups.pop_front() {
                return c;
            }
            let token = if s.token_issued { "******" } else { TOKEN };
            s.token_issued = true;
            Canned::new(
                200,
                json!({"node": {"uuid": NODE_UUID, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
                       "config": {"heartbeat_timeout": s.heartbeat_timeout, "agent_token": token, "agent_token_required": true,
                                  "permitted_image_formats": ["raw", "gpt", "qcow2", "iso"], "agent_md5_checksum_enable": true}}),
            )
        }
        ("POST", p) if p.starts_with("/v1/heartbeat/") => s
            .heartbeats
            .pop_front()
            .unwrap_or(Canned::new(202, Value::Null)),
        ("POST", "/v1/continue_inspection") => s
            .inspections
            .pop_front()
            .unwrap_or(Canned::new(202, json!({"uuid": NODE_UUID}))),
        _ => Canned::error(404, "Resource could not be found."),
    }
}
