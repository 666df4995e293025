//! The validated studio: every string of the file parsed into its grammar,
//! every reference checked.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use indexmap::IndexMap;

use crate::grammar::{CycleTime, Improvement, Predicate, Schedule, Target};
use crate::roles::RoleDef;

/// A whole studio: the file's sections and the roles from the role files.
#[derive(Debug, Clone)]
pub struct Studio {
    /// The studio file.
    pub file: PathBuf,
    /// The folder relative paths in the file are taken from.
    pub base_dir: PathBuf,
    /// `studio`.
    pub studio: StudioSection,
    /// `server`.
    pub server: ServerSection,
    /// `triggers.scheduled`, `triggers.event_based`, then the same lists of
    /// `demo_triggers` (triggers a studio adds beyond the seed's, such as the
    /// example studio's short-interval demo), in file order.
    pub triggers: Vec<Trigger>,
    /// `feedback_loops`.
    pub feedback_loops: FeedbackLoops,
    /// `content_sources`, flattened in file order.
    pub content_sources: Vec<ContentSource>,
    /// `progress_metrics`, flattened in file order.
    pub progress_metrics: Vec<MetricDef>,
    /// `workflows` by name.
    pub workflows: IndexMap<String, Workflow>,
    /// `agents`.
    pub agents: AgentsSection,
    /// Roles from the role files, by name.
    pub roles: IndexMap<String, RoleDef>,
    /// `reviewers` (people) by id.
    pub reviewers: IndexMap<String, Reviewer>,
    /// Every workflow's `deliverables` and the `publishers`.
    pub publishing: super::deliverables::Publishing,
}

/// `studio`.
#[derive(Debug, Clone)]
pub struct StudioSection {
    /// Shown on the dashboard.
    pub name: String,
    /// Zone of every schedule without its own.
    pub timezone: Tz,
}

/// `server`.
#[derive(Debug, Clone)]
pub struct ServerSection {
    /// Where services keep their sled stores (relative to the working directory).
    pub data_dir: PathBuf,
    /// NATS URL for `serve` and `agent`.
    pub nats_url: String,
    /// Subject prefix, `concierto.` by default.
    pub subject_prefix: String,
    /// Admin gRPC address.
    pub grpc_addr: String,
    /// Dashboard and webhooks address.
    pub http_addr: String,
    /// The content library's JSON API, served by the ingest service (default `127.0.0.1:8081`).
    pub library_addr: String,
    /// Where other services (the dashboard's library proxy) reach the content
    /// library: `server.library_url`, default `http://` + `library_addr` with
    /// an all-interfaces address (`0.0.0.0`, `[::]`) read as loopback. Set it
    /// when the library runs in another process or container
    /// (`http://ingest:8081`): the bind address is no peer address there.
    pub library_url: String,
    /// The content library's reads (browse, search, blobs, exports) need no
    /// token (`library_public`, default false: every route needs a reviewer's).
    pub library_public: bool,
    /// The dashboard (HTML pages, live updates), served by `concierto serve
    /// dashboard` and `up` (default `127.0.0.1:8082`).
    pub dashboard_addr: String,
    /// The dashboard's cookies carry `Secure` (`dashboard_secure_cookies`,
    /// default false): set it when browsers reach the dashboard over HTTPS
    /// (a TLS-terminating proxy in front of it).
    pub dashboard_secure_cookies: bool,
    /// Where every service process answers `GET /metrics` (Prometheus text),
    /// `/healthz` and `/readyz` (default `127.0.0.1:9464`; empty: not served).
    pub metrics_addr: String,
    /// OTLP endpoint traces are exported to (gRPC, e.g. `http://jaeger:4317`);
    /// empty: `OTEL_EXPORTER_OTLP_ENDPOINT` when set, else no export.
    pub otlp_endpoint: String,
    /// Log lines as `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Bus limits.
    pub bus: BusSection,
    /// TLS for the admin API, when configured.
    pub tls: Option<TlsSection>,
    /// The human-feedback intake (Slack, email, web form).
    pub feedback: FeedbackIntake,
    /// How long the orchestrator keeps runs that ended (`retention`, default
    /// 90 days); `None` (`"off"` or `"0"`): forever.
    pub retention: Option<Duration>,
    /// How many partitions run ids hash to (`partitions`, default 1), each
    /// owned by one orchestrator at a time; fixed for the studio's data.
    pub partitions: u32,
}

/// `server.log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `server.tls`: the admin API's certificate (PEM files, absolute).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSection {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `server.feedback`: secrets by the environment variables that hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackIntake {
    /// Variable holding the Slack app's signing secret (default `SLACK_SIGNING_SECRET`).
    pub slack_signing_secret_env: String,
    /// Variable holding the inbound-mail webhook's bearer token (default `CONCIERTO_EMAIL_TOKEN`).
    pub email_token_env: String,
    /// Variable holding the web form's CSRF key, at least 16 bytes (default
    /// `CONCIERTO_CSRF_KEY`; unset: a random key per process).
    pub csrf_key_env: String,
    /// Largest request body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: u64,
    /// Largest web-form post, in bytes (default 64 KiB; `max_body_bytes`
    /// applies too).
    pub form_max_body_bytes: u64,
    /// Web-form posts per minute from one client address (default 10).
    pub form_per_client_per_minute: u32,
    /// Web-form posts per minute from everyone (default 60).
    pub form_per_minute: u32,
    /// Variable holding the Slack bot token (`xoxb-…`) the gate notifier posts
    /// with (default `SLACK_BOT_TOKEN`; unset: gate events go only to the bus).
    pub slack_bot_token_env: String,
    /// Base URL of Slack's Web API, without a trailing slash (default
    /// `https://slack.com/api`).
    pub slack_api_base: String,
    /// `server.feedback.smtp`: the feedback router's email replies (none: off).
    pub smtp: Option<super::feedback_router::SmtpSection>,
}

impl Default for FeedbackIntake {
    fn default() -> Self {
        FeedbackIntake {
            slack_signing_secret_env: "SLACK_SIGNING_SECRET".into(),
            email_token_env: "CONCIERTO_EMAIL_TOKEN".into(),
            csrf_key_env: "CONCIERTO_CSRF_KEY".into(),
            max_body_bytes: 1024 * 1024,
            form_max_body_bytes: 64 * 1024,
            form_per_client_per_minute: 10,
            form_per_minute: 60,
            slack_bot_token_env: "SLACK_BOT_TOKEN".into(),
            slack_api_base: "https://slack.com/api".into(),
            smtp: None,
        }
    }
}

/// `server.bus`.
#[derive(Debug, Clone, PartialEq)]
pub struct BusSection {
    /// Unacknowledged time before a task is delivered again.
    pub ack_wait: Duration,
    /// Deliveries before a task is dead-lettered.
    pub max_deliver: u64,
    /// Window of message-id deduplication.
    pub duplicate_window: Duration,
    /// Oldest message kept in a stream; zero for no limit.
    pub max_age: Duration,
    /// Most bytes per stream; zero for no limit.
    pub max_bytes: u64,
    /// Most messages per stream; zero for no limit.
    pub max_msgs: u64,
    /// How `serve` and `agent` log in to NATS.
    pub auth: BusAuth,
    /// TLS to NATS (`server.bus.tls`), when configured.
    pub tls: Option<BusTls>,
    /// Copies JetStream keeps of every stream and bucket (`server.bus.replicas`,
    /// default 1; 3 on a 3-node NATS cluster so one node may die).
    pub replicas: usize,
}

/// `server.bus` credentials: where the secrets are (environment variables,
/// mounted files), never the secrets. At most one way is used: a credentials
/// file, an nkey seed, a token, or a user with a password.
#[derive(Debug, Clone, PartialEq)]
pub struct BusAuth {
    /// The NATS user (`server.bus.user`; unset: `CONCIERTO_NATS_USER` from the
    /// environment, when set).
    pub user: Option<String>,
    /// Variable holding the user's password (default `CONCIERTO_NATS_PASSWORD`).
    pub password_env: String,
    /// Variable holding a token (default `CONCIERTO_NATS_TOKEN`).
    pub token_env: String,
    /// A NATS credentials file (user JWT and nkey seed), relative paths taken
    /// from the studio file's folder.
    pub creds_file: Option<PathBuf>,
    /// Variable holding a user nkey seed (default `CONCIERTO_NATS_NKEY_SEED`).
    pub nkey_seed_env: String,
    /// A file holding a user nkey seed (a mounted Secret).
    pub nkey_seed_file: Option<PathBuf>,
}

impl BusAuth {
    /// The variable a user name is taken from when `server.bus.user` is unset.
    pub const USER_ENV: &'static str = "CONCIERTO_NATS_USER";
}

impl Default for BusAuth {
    fn default() -> Self {
        BusAuth {
            user: None,
            password_env: "CONCIERTO_NATS_PASSWORD".into(),
            token_env: "CONCIERTO_NATS_TOKEN".into(),
            creds_file: None,
            nkey_seed_env: "CONCIERTO_NATS_NKEY_SEED".into(),
            nkey_seed_file: None,
        }
    }
}

/// `server.bus.tls`: TLS to NATS (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct BusTls {
    /// CA certificates the server's certificate is checked against (default:
    /// the system's roots).
    pub ca: Option<PathBuf>,
    /// Client certificate, for servers that verify clients (with `key`).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
    /// Refuse a server that does not speak TLS (default true).
    pub required: bool,
}

/// Run priority as written in a workflow or trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Ordinary and scheduled work.
    Normal,
    /// Jumps the queue.
    Urgent,
}

/// What to do with fires missed while the scheduler was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Count and log them; fire none.
    Skip,
    /// Fire once for all of them.
    FireOnce,
    /// Fire each, up to this many.
    FireAll(u32),
}

/// When a scheduled trigger fires.
#[derive(Debug, Clone)]
pub enum When {
    /// `time:` or `cron:`.
    Schedule(Schedule),
    /// `interval:`.
    Interval(Duration),
}

/// What an event trigger listens for.
#[derive(Debug, Clone)]
pub enum EventFilter {
    /// `source: [...]`: new content from these sources (`content.ingested.<source>`).
    NewContent {
        /// Source names or platforms (`twitter` matches a `twitter_stream` source).
        sources: Vec<String>,
    },
    /// `metric: "<name> <op> <value>"` (`event.metric.<name>`).
    Threshold(Predicate),
}

/// What fires a trigger.
#[derive(Debug, Clone)]
pub enum TriggerKind {
    /// On a schedule.
    Scheduled {
        /// The schedule.
        when: When,
        /// Its zone (the trigger's own, or the studio's).
        timezone: Tz,
        /// Missed fires.
        misfire: Misfire,
    },
    /// On an event.
    Event(EventFilter),
}

/// A trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Its name, e.g. `daily_content_generation`.
    pub name: String,
    /// What fires it.
    pub kind: TriggerKind,
    /// Roles it involves.
    pub agents: Vec<String>,
    /// The workflow it starts.
    pub workflow: String,
    /// Priority of the runs it starts (default: the workflow's).
    pub priority: Option<Priority>,
    /// Flood control of an event trigger (`batch`, `max_runs_per_day`).
    pub flood: super::flood::Flood,
}

/// `feedback_loops`.
#[derive(Debug, Clone, Default)]
pub struct FeedbackLoops {
    /// `agent_to_agent`.
    pub agent_to_agent: Vec<ReviewLoop>,
    /// `agent_to_human[].quality_gates`.
    pub quality_gates: Vec<QualityGate>,
    /// `human_to_agent`.
    pub human_to_agent: Vec<FeedbackCapture>,
}

/// What happens when a loop runs out of rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The step fails.
    Fail,
    /// The output goes to people.
    Escalate,
}

/// A producer → reviewer loop.
#[derive(Debug, Clone)]
pub struct ReviewLoop {
    /// Its name, e.g. `creator_to_reviewer`.
    pub name: String,
    /// Roles whose output is reviewed.
    pub producers: Vec<String>,
    /// Roles that review.
    pub reviewers: Vec<String>,
    /// `immediate` or a batching period.
    pub cycle_time: CycleTime,
    /// Rounds before giving up (default 3).
    pub max_rounds: u32,
    /// Score needed to pass (default: the quality_score target).
    pub pass_mark: Option<f64>,
    /// After the last round (default fail).
    pub on_exhausted: Exhausted,
}

/// What a gate does when its SLA passes without a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachAction {
    /// Keep waiting (the default).
    Hold,
    /// Approve.
    Approve,
    /// Reject.
    Reject,
}

/// A quality gate decided by people.
#[derive(Debug, Clone)]
pub struct QualityGate {
    /// Its name, e.g. `brand_approval`.
    pub name: String,
    /// The output label that opens it, e.g. `major_brand_changes`.
    pub threshold: String,
    /// People who decide it (ids in `reviewers`).
    pub reviewers: Vec<String>,
    /// Time to decide.
    pub sla: Duration,
    /// Reminders before the SLA ends, as time left (default: half and a tenth of the SLA).
    pub remind_before: Vec<Duration>,
    /// On breach.
    pub on_breach: BreachAction,
    /// Who is told on breach (default: the reviewers' escalation contacts).
    pub escalate_to: Vec<String>,
    /// `batch`: a gate of this kind opened within this long of an open one
    /// joins it (one decision for the batch; see [`super::gate_batch`]).
    pub batch: Option<Duration>,
}

/// How people's feedback is taken in.
#[derive(Debug, Clone)]
pub struct FeedbackCapture {
    /// Its name, e.g. `feedback_capture`.
    pub name: String,
    /// `slack`, `email`, `web_form`.
    pub channels: Vec<String>,
    /// The role that categorises it.
    pub processor: String,
    /// `route_to_specialists`.
    pub action: String,
    /// `routing`: category → the roles its feedback goes to (the seed's table
    /// by default, see [`super::keys::default_routing`]).
    pub routing: IndexMap<String, Vec<String>>,
}

/// Kinds of content source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A folder of images.
    ImageDatabase,
    /// A folder of design-system files.
    ComponentLibrary,
    /// Feeds and pages.
    WebScraper,
    /// An X/Twitter account.
    TwitterStream,
    /// Campaign analytics or processed feedback.
    TrainingData,
}

impl SourceKind {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ImageDatabase => "image_database",
            SourceKind::ComponentLibrary => "component_library",
            SourceKind::WebScraper => "web_scraper",
            SourceKind::TwitterStream => "twitter_stream",
            SourceKind::TrainingData => "training_data",
        }
    }
}

/// How often a source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// When its files change.
    OnUpdate,
    /// As soon as anything arrives.
    Continuous,
    /// Every so often.
    Every(Duration),
}

/// One content source.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentSource {
    /// Its name, e.g. `siteinspire`, `FigsFromPlums`.
    pub name: String,
    /// `curated_databases`, `external_inspiration`, `training_data`, with the sub-group
    /// (`external_inspiration.twitter_accounts`) when nested.
    pub group: String,
    /// Its kind.
    pub kind: SourceKind,
    /// Folder (`path` or `source`, resolved against the studio file's
    /// folder unless absolute), URL or handle.
    pub location: String,
    /// The role that indexes, processes or learns from it.
    pub role: String,
    /// How often.
    pub refresh: Refresh,
    /// Extractors to run (`extractor`/`extract`).
    pub extract: Vec<String>,
    /// Hosts a web source may fetch besides its own URL's host (`allow_hosts`;
    /// item pages and images of a listing often live on a CDN), lowercase.
    pub allow_hosts: Vec<String>,
    /// A web source may fetch from loopback, private, link-local and other
    /// non-public addresses (`allow_private_networks`, default false).
    pub allow_private_networks: bool,
    /// The source is read (`enabled`, default true). A source that is off
    /// makes no request and reads no folder; it stays in the file (and its
    /// name stays known to triggers).
    pub enabled: bool,
}

/// What a metric is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// A level: `10`, `0.85`, `< 2 hours`.
    Target(Target),
    /// A rate of improvement: `5% weekly`.
    Improvement(Improvement),
}

/// A progress metric.
#[derive(Debug, Clone)]
pub struct MetricDef {
    /// Its name, e.g. `daily_output`.
    pub name: String,
    /// Its group, e.g. `content_generation`.
    pub group: String,
    /// Target or improvement.
    pub goal: Goal,
    /// The goal as written.
    pub goal_text: String,
    /// `type:` as written (`content_pieces`, `sla`, ...), if any.
    pub kind: Option<String>,
    /// The role that tracks it.
    pub tracker: String,
    /// What happens when it falls off target (`on_off_target`).
    pub on_off_target: Option<super::targets::OnOffTarget>,
}

/// A workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its runs' priority unless the trigger says otherwise.
    pub priority: Priority,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Run when the workflow fails.
    pub on_failure: Option<Step>,
}

/// A step of a workflow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique in the workflow.
    pub id: String,
    /// The role that does it.
    pub role: String,
    /// The instruction.
    pub task: String,
    /// `trigger` and ids of earlier steps.
    pub inputs: Vec<String>,
    /// Time for one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The agent_to_agent loop that reviews its output, as resolved at load
    /// (see [`review`](super::review)): the `review:` key's loop, else the loop
    /// listing the role as a producer; `None` for `review: none` or a role no
    /// loop produces for.
    pub review: Option<String>,
    /// Labels on its output.
    pub labels: Vec<String>,
    /// Data fetched for it before it runs (its `context:` list).
    pub context: Vec<super::context::ContextItem>,
}

/// `agents`.
#[derive(Debug, Clone)]
pub struct AgentsSection {
    /// Folders of role files (absolute).
    pub paths: Vec<PathBuf>,
    /// Executor of roles without their own.
    pub default_executor: String,
    /// Executors by name.
    pub executors: IndexMap<String, ExecutorDef>,
    /// Per-role settings.
    pub roles: IndexMap<String, RoleSettings>,
    /// `budget`: the studio's spending limits.
    pub budget: super::Budget,
    /// `budget_owner`: reviewers told when a budget is reached.
    pub budget_owner: Vec<String>,
    /// `tools`: tool-loop limits and the built-in tools' settings.
    pub tools: super::ToolsSettings,
    /// `mcp_servers`: MCP servers whose tools roles may use, by name.
    pub mcp_servers: IndexMap<String, super::McpServerDef>,
}

/// Kinds of executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Deterministic, offline.
    Builtin,
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// A local program.
    Command,
}

/// An executor (`agents.executors.<name>`). Keys that do not apply to its
/// kind keep their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorDef {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ExecutorKind,
    /// API base URL: for `openai` it includes the version
    /// (`https://api.openai.com/v1`, the default), for `anthropic` it does not
    /// (`https://api.anthropic.com`, the default). `None` for other kinds.
    pub base_url: Option<String>,
    /// Model name, used for roles that do not name their own.
    pub model: Option<String>,
    /// Environment variable holding the key (the key itself never goes in the file).
    pub api_key_env: Option<String>,
    /// Program and arguments, for `command`.
    pub command: Vec<String>,
    /// Time for one HTTP attempt or one run of the command (default 120 s for
    /// `openai` and `anthropic`, 300 s for `command`).
    pub timeout: Duration,
    /// Most tokens of an answer: sent to the API (`anthropic` defaults to
    /// 4096; `openai` sends none unless set).
    pub max_tokens: Option<u32>,
    /// HTTP retries after the first attempt, for 429 and 5xx answers and
    /// timeouts (default 3).
    pub max_retries: u32,
    /// Most bytes a `command` may print on stdout (default 1 MiB).
    pub max_output_bytes: u64,
    /// Prices, to compute `Usage.cost_usd`; `None`: cost is reported as zero.
    pub prices: Option<Prices>,
    /// Variables set for a `command` (`env: {NAME: value}`).
    pub env: IndexMap<String, String>,
    /// Variables a `command` gets from the agent's own environment (`env:
    /// [NAME, ...]`, or `NAME: ~` in the map form). The agent's other
    /// variables (its keys and secrets) are withheld, except `PATH`, `HOME`,
    /// `LANG`, `LC_ALL`, `TZ` and `TMPDIR`.
    pub pass_env: Vec<String>,
    /// Working folder of a `command` (absolute; given relative to the studio
    /// file's folder).
    pub working_dir: Option<PathBuf>,
}

impl ExecutorDef {
    /// A definition of `kind` with every default: what a studio file with only
    /// `kind:` gives.
    pub fn new(name: impl Into<String>, kind: ExecutorKind) -> Self {
        let http = matches!(kind, ExecutorKind::OpenAi | ExecutorKind::Anthropic);
        ExecutorDef {
            name: name.into(),
            kind,
            base_url: kind.default_base_url().map(str::to_string),
            model: None,
            api_key_env: None,
            command: Vec::new(),
            timeout: if http {
                DEFAULT_HTTP_TIMEOUT
            } else {
                DEFAULT_COMMAND_TIMEOUT
            },
            max_tokens: (kind == ExecutorKind::Anthropic).then_some(DEFAULT_ANTHROPIC_MAX_TOKENS),
            max_retries: DEFAULT_MAX_RETRIES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            prices: None,
            env: IndexMap::new(),
            pass_env: Vec::new(),
            working_dir: None,
        }
    }
}

impl ExecutorKind {
    /// As written in the file (`builtin`, `openai`, `anthropic`, `command`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Builtin => "builtin",
            ExecutorKind::OpenAi => "openai",
            ExecutorKind::Anthropic => "anthropic",
            ExecutorKind::Command => "command",
        }
    }

    /// The API base URL used when the file gives none.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ExecutorKind::OpenAi => Some(DEFAULT_OPENAI_BASE_URL),
            ExecutorKind::Anthropic => Some(DEFAULT_ANTHROPIC_BASE_URL),
            ExecutorKind::Builtin | ExecutorKind::Command => None,
        }
    }
}

/// `openai` base URL by default.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// `anthropic` base URL by default.
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// Time for one HTTP attempt by default.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for one run of a `command` by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// HTTP retries after the first attempt by default.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// `anthropic` answer limit by default (the API requires one).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u32 = 4096;
/// Most stdout bytes of a `command` by default (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// What a model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// Per million input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Per million output (completion) tokens.
    pub output_per_mtok: f64,
}

impl Prices {
    /// The cost of a call in US dollars.
    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok)
            / 1e6
    }
}

/// Per-role settings.
#[derive(Debug, Clone, Default)]
pub struct RoleSettings {
    /// Executor name.
    pub executor: Option<String>,
    /// Worker replicas `concierto up` starts.
    pub replicas: Option<u32>,
    /// Tasks one worker runs at once.
    pub max_in_flight: Option<u32>,
    /// The role's own spending limits.
    pub budget: super::Budget,
}

/// A person who decides gates.
#[derive(Debug, Clone, Default)]
pub struct Reviewer {
    /// Their id (the key).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: Option<String>,
    /// Slack user id.
    pub slack: Option<String>,
    /// SHA-256 (hex) of their admin token.
    pub token_sha256: Option<String>,
    /// What they may do over the admin API: `reviewer` (read, decide their
    /// gates, give feedback; the default), `admin` (also start and cancel
    /// runs, fire triggers, record metric values) and `metrics` (record
    /// metric values).
    pub roles: Vec<String>,
    /// Who is told when their gates pass the SLA.
    pub escalation: Vec<String>,
}
