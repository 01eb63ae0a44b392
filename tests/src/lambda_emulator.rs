//! A small AWS Lambda Runtime API (2018-06-01) on a free loopback port, and
//! the Lambda binaries of this workspace run under it, as AWS runs them on
//! `provided.al2023`: the process long-polls `GET /runtime/invocation/next`,
//! answers with `POST /runtime/invocation/{id}/response` or `/error`, and
//! reports start-up failures to `POST /runtime/init/error`.
//!
//! The same wire format as Lambda's: the event is the body of `next`, with
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`
//! and `-Trace-Id` headers; results are JSON bodies answered with 202.
//! Events are built here too: API Gateway HTTP API (payload 2.0) requests
//! and EventBridge Scheduler inputs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

/// Lambda's limit on a synchronous invocation's response.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "eu-central-1";

/// The four functions of template.yaml, by their binary's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Ingest,
    Api,
    Webhooks,
    Scheduler,
}

impl Function {
    pub const ALL: [Function; 4] = [Function::Ingest, Function::Api, Function::Webhooks, Function::Scheduler];

    pub fn binary(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Api => "api",
            Function::Webhooks => "webhooks",
            Function::Scheduler => "scheduler",
        }
    }

    pub fn function_name(self) -> String {
        format!("engagetrack-{}", self.binary())
    }

    pub fn arn(self) -> String {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", self.function_name())
    }
}

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`: the result's bytes.
    Response(Vec<u8>),
    /// `POST /runtime/invocation/{id}/error`: `{"errorType", "errorMessage"}`
    /// and the `Lambda-Runtime-Function-Error-Type` header.
    Error { error_type_header: Option<String>, body: Value },
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the function process ended ({status}); its log:\n{logs}")]
    Exited { status: String, logs: String },
}

struct Invocation {
    request_id: String,
    event: Vec<u8>,
    deadline: Duration,
    answer: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Invocation>,
    in_flight: HashMap<String, oneshot::Sender<Outcome>>,
    init_errors: Vec<(Option<String>, Value)>,
    /// Request ids in the order `next` handed them out.
    delivered: Vec<String>,
}

struct Api {
    function_arn: String,
    queue: Mutex<Queue>,
    arrived: Notify,
}

impl Api {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The Runtime API server. Dropping it stops the server.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    api: Arc<Api>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl RuntimeApi {
    pub async fn start(function_arn: String) -> Self {
        let api = Arc::new(Api { function_arn, queue: Mutex::default(), arrived: Notify::new() });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(|| async {
                (StatusCode::NOT_FOUND, axum::Json(json!({"errorType": "InvalidRequest", "errorMessage": "unknown path"})))
            })
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the runtime API");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(async { drop(rx.await) }).await;
        });
        Self { addr, api, shutdown: Some(tx) }
    }

    /// Queues an event; the receiver yields the function's answer.
    fn enqueue(&self, event: &Value, deadline: Duration) -> (String, oneshot::Receiver<Outcome>) {
        let (answer, rx) = oneshot::channel();
        let request_id = Uuid::new_v4().to_string();
        let event = serde_json::to_vec(event).expect("event JSON");
        self.api.queue().waiting.push_back(Invocation { request_id: request_id.clone(), event, deadline, answer });
        self.api.arrived.notify_one();
        (request_id, rx)
    }

    /// `/runtime/init/error` reports so far.
    pub fn init_errors(&self) -> Vec<(Option<String>, Value)> {
        self.api.queue().init_errors.clone()
    }

    /// Request ids in the order the function fetched them.
    pub fn delivered(&self) -> Vec<String> {
        self.api.queue().delivered.clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, axum::Json(json!({"errorType": error_type, "errorMessage": message}))).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

/// Long-polls until an event is queued, as Lambda's does.
async fn next(State(api): State<Arc<Api>>) -> Response {
    let invocation = loop {
        let arrived = api.arrived.notified();
        if let Some(invocation) = api.queue().waiting.pop_front() {
            break invocation;
        }
        arrived.await;
    };
    let deadline_ms = (SystemTime::now() + invocation.deadline).duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let trace_id = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        &Uuid::new_v4().simple().to_string()[..24],
        &Uuid::new_v4().simple().to_string()[..16]
    );
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).expect("header value");
    headers.insert("lambda-runtime-aws-request-id", header(&invocation.request_id));
    headers.insert("lambda-runtime-deadline-ms", header(&deadline_ms.to_string()));
    headers.insert("lambda-runtime-invoked-function-arn", header(&api.function_arn));
    headers.insert("lambda-runtime-trace-id", header(&trace_id));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    {
        let mut queue = api.queue();
        queue.delivered.push(invocation.request_id.clone());
        queue.in_flight.insert(invocation.request_id, invocation.answer);
    }
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn settle(api: &Api, id: &str, outcome: Outcome) -> Response {
    let Some(answer) = api.queue().in_flight.remove(id) else {
        return api_error(StatusCode::BAD_REQUEST, "InvalidRequestID", &format!("no invocation {id} is in flight"));
    };
    let _ = answer.send(outcome);
    accepted()
}

async fn response(State(api): State<Arc<Api>>, Path(id): Path<String>, body: Bytes) -> Response {
    if body.len() > MAX_RESPONSE_BYTES {
        let _ = settle(&api, &id, Outcome::Error { error_type_header: None, body: json!({"errorType": "Function.ResponseSizeTooLarge"}) });
        return api_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "response payload exceeds 6291556 bytes");
    }
    settle(&api, &id, Outcome::Response(body.to_vec()))
}

fn error_report(headers: &HeaderMap, body: &[u8]) -> (Option<String>, Value) {
    let error_type = headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    (error_type, body)
}

async fn error(State(api): State<Arc<Api>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (error_type_header, body) = error_report(&headers, &body);
    settle(&api, &id, Outcome::Error { error_type_header, body })
}

async fn init_error(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let report = error_report(&headers, &body);
    api.queue().init_errors.push(report);
    accepted()
}

/// The debug binaries of the four functions, built once per test process
/// (a no-op when fresh) so a test never runs a stale one.
/// `ENGAGETRACK_LAMBDA_BIN_DIR` names a folder of prebuilt ones instead.
pub fn binary(function: Function) -> PathBuf {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    if let Some(dir) = std::env::var_os("ENGAGETRACK_LAMBDA_BIN_DIR") {
        return PathBuf::from(dir).join(function.binary());
    }
    let built = BUILT.get_or_init(|| {
        let packages: Vec<(String, &str)> = Function::ALL.iter().map(|f| (format!("engagetrack-{}", f.binary()), f.binary())).collect();
        crate::cargo_build(&packages.iter().map(|(p, b)| (p.as_str(), *b)).collect::<Vec<_>>())
    });
    built.get(function.binary()).cloned().unwrap_or_else(|| panic!("cargo built no `{}` binary", function.binary()))
}

/// One function process under its own Runtime API, ended on drop.
pub struct Lambda {
    pub function: Function,
    pub runtime: RuntimeApi,
    child: tokio::process::Child,
    logs: Arc<Mutex<String>>,
}

impl Lambda {
    /// Starts the function's binary as Lambda would: `AWS_LAMBDA_RUNTIME_API`
    /// and the function's usual environment, plus `env` (the function's
    /// configuration). Nothing else of the test's environment leaks in
    /// except `PATH`.
    pub async fn start(function: Function, env: &[(&str, String)]) -> Self {
        let runtime = RuntimeApi::start(function.arn()).await;
        let mut command = tokio::process::Command::new(binary(function));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function.function_name())
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", function.function_name()))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("2026/01/01/[$LATEST]{}", Uuid::new_v4().simple()))
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("TZ", ":UTC")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start the {} binary: {e}", function.binary()));
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut logs = logs.lock().unwrap_or_else(|p| p.into_inner());
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        Self { function, runtime, child, logs }
    }

    /// Everything the process wrote to stdout and stderr so far (CloudWatch's view).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A synchronous invocation (`RequestResponse`) with a 30 s deadline.
    pub async fn invoke(&mut self, event: &Value) -> Result<Outcome, InvokeError> {
        const DEADLINE: Duration = Duration::from_secs(30);
        let (_id, answer) = self.runtime.enqueue(event, DEADLINE);
        tokio::select! {
            outcome = answer => outcome.map_err(|_| InvokeError::Timeout(DEADLINE)),
            status = self.child.wait() => {
                // Let the log readers drain what the process wrote last.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                Err(InvokeError::Exited { status, logs: self.logs() })
            }
            () = tokio::time::sleep(DEADLINE) => Err(InvokeError::Timeout(DEADLINE)),
        }
    }

    /// An invocation that must succeed with a JSON result.
    pub async fn invoke_ok(&mut self, event: &Value) -> Value {
        match self.invoke(event).await {
            Ok(Outcome::Response(bytes)) => serde_json::from_slice(&bytes).expect("the result is JSON"),
            other => panic!("{} answered {other:?}; log:\n{}", self.function.binary(), self.logs()),
        }
    }

    /// Sends an API Gateway HTTP API request; the function's answer decoded.
    pub async fn http(&mut self, request: &HttpRequest) -> HttpAnswer {
        HttpAnswer::from_result(&self.invoke_ok(&request.event()).await)
    }
}

/// One HTTP request as API Gateway's HTTP API would hand it to a function.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    /// Headers the client sent (API Gateway lower-cases the names).
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// HTTP API base64-encodes bodies it does not take for text.
    pub base64: bool,
    /// The client address API Gateway saw: `requestContext.http.sourceIp`.
    pub source_ip: String,
}

impl HttpRequest {
    pub fn new(method: &'static str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: vec![("user-agent".into(), "curl/8.5.0".into())],
            body: None,
            base64: false,
            source_ip: "198.51.100.1".into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn base64(mut self) -> Self {
        self.base64 = true;
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The payload format 2.0 event. API Gateway appends the source address
    /// to any `X-Forwarded-For` the client sent, and adds its own headers.
    pub fn event(&self) -> Value {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut headers: serde_json::Map<String, Value> = self.headers.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect();
        let forwarded = match self.header_value("x-forwarded-for") {
            Some(sent) => format!("{sent}, {}", self.source_ip),
            None => self.source_ip.clone(),
        };
        headers.insert("x-forwarded-for".into(), forwarded.into());
        headers.insert("x-forwarded-port".into(), "443".into());
        headers.insert("x-forwarded-proto".into(), "https".into());
        headers.insert("host".into(), "abc123xyz9.execute-api.eu-central-1.amazonaws.com".into());
        headers.insert(
            "x-amzn-trace-id".into(),
            format!("Root=1-{:08x}-{}", now.as_secs(), &Uuid::new_v4().simple().to_string()[..24]).into(),
        );
        if let Some(body) = &self.body {
            headers.insert("content-length".into(), body.len().to_string().into());
        }
        let body = self.body.as_ref().map(|b| match self.base64 {
            true => BASE64.encode(b),
            false => String::from_utf8(b.clone()).expect("a text body is UTF-8; use .base64() for bytes"),
        });
        let user_agent = self.header_value("user-agent").unwrap_or_default();
        let time = chrono::DateTime::from_timestamp(now.as_secs() as i64, 0).unwrap_or_default().format("%d/%b/%Y:%H:%M:%S +0000");
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": "abc123xyz9",
                "domainName": "abc123xyz9.execute-api.eu-central-1.amazonaws.com",
                "domainPrefix": "abc123xyz9",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": self.source_ip,
                    "userAgent": user_agent,
                },
                "requestId": format!("{}=", &Uuid::new_v4().simple().to_string()[..15]),
                "routeKey": "$default",
                "stage": "$default",
                "time": time.to_string(),
                "timeEpoch": now.as_millis() as u64,
            },
            "isBase64Encoded": self.base64,
        });
        if !self.query.is_empty() {
            let params: serde_json::Map<String, Value> = url_pairs(&self.query).into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            event["queryStringParameters"] = Value::Object(params);
        }
        if let Some(cookies) = self.header_value("cookie") {
            event["cookies"] = cookies.split("; ").map(|c| Value::String(c.to_owned())).collect();
            event["headers"].as_object_mut().map(|h| h.remove("cookie"));
        }
        if let Some(body) = body {
            event["body"] = body.into();
        }
        event
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// An HTTP answer, from a function's API Gateway result or from the local
/// server, in one shape so the two can be compared.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The payload 2.0 result: `statusCode`, `headers`, `body`, `isBase64Encoded`.
    pub fn from_result(result: &Value) -> Self {
        let status = result["statusCode"].as_u64().expect("statusCode") as u16;
        let mut headers: HashMap<String, String> = result["headers"]
            .as_object()
            .map(|h| h.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        if let Some(multi) = result["multiValueHeaders"].as_object() {
            for (k, values) in multi {
                let joined: Vec<&str> = values.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if !joined.is_empty() {
                    headers.entry(k.to_ascii_lowercase()).or_insert_with(|| joined.join(", "));
                }
            }
        }
        let text = result["body"].as_str().unwrap_or_default();
        let body = match result["isBase64Encoded"].as_bool().unwrap_or(false) {
            true => BASE64.decode(text).expect("base64 body"),
            false => text.as_bytes().to_vec(),
        };
        Self { status, content_type: headers.get("content-type").cloned(), headers, body }
    }

    pub async fn from_reqwest(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers: HashMap<String, String> =
            response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
        let body = response.bytes().await.expect("body").to_vec();
        Self { status, content_type: headers.get("content-type").cloned(), headers, body }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Status, content type and body: what a client sees, without the
    /// headers each host adds for itself (date, content-length).
    pub fn visible(&self) -> (u16, Option<String>, String) {
        (self.status, self.content_type.clone(), String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// The same request to the local server (the `engagetrack` router over TCP).
pub async fn send_local(base_url: &str, request: &HttpRequest) -> HttpAnswer {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
    let url = match request.query.is_empty() {
        true => format!("{base_url}{}", request.path),
        false => format!("{base_url}{}?{}", request.path, request.query),
    };
    let mut builder = reqwest::Client::new().request(method, url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    HttpAnswer::from_reqwest(builder.send().await.expect("local request")).await
}

/// The input an EventBridge Scheduler schedule of template.yaml delivers.
pub fn scheduled_job(job: &str) -> Value {
    json!({ "job": job })
}

/// A key-value connection string for a `tokio_postgres::Config` (what a
/// function's `DATABASE_URL` holds).
pub fn database_url(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        match host {
            Host::Tcp(h) => parts.push(format!("host={h}")),
            Host::Unix(p) => parts.push(format!("host={}", p.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password='{}'", String::from_utf8_lossy(password).replace('\\', "\\\\").replace('\'', "\\'")));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.join(" ")
}
