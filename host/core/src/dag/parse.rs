//! [`parse_dag`]: one walk over a DAG file's spanned tree, from TOML text to a validated [`Dag`].
//!
//! The walk reads the DAG's own fields, then `[defaults]`, then each task, then `flow`, and finally
//! links the dependencies into a graph. Each step reads what it can and records what it cannot;
//! values it could not read fall back to defaults so later steps still run (a task with a bad
//! plugin is still a node of the graph, so it does not cause "unknown task" noise downstream).
//! Only if nothing was recorded is the [`Dag`] returned.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use toml::de::DeTable;
use toml::Spanned;

use super::flow::{self, is_id_char};
use super::graph::DepGraph;
use super::reader::{join, Reader, Value};
use super::{grant_name_problem, Grants, Origin};
use super::{is_plugin_id, Caps, Dag, Diagnostic, PluginRef, Schedule, Task, TaskKind, TriggerRule};
use crate::text::{shorten, MAX_ID_LEN};

/// The fields of the DAG itself, at the top of the file.
const DAG_FIELDS: &[&str] = &[
    "id",
    "description",
    "tags",
    "owner",
    "schedule",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "is_paused_upon_creation",
    "flow",
    "defaults",
    "tasks",
];

/// The fields of `[defaults]`: the task settings a task may inherit.
const SETTINGS_FIELDS: &[&str] = &[
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
    "fuel",
    "memory_mb",
];

/// The fields of a `[tasks.<id>]` table.
const TASK_FIELDS: &[&str] = &[
    "plugin",
    "params",
    "upstream",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
    "fuel",
    "memory_mb",
    "kind",
    "map_over",
    "poke_interval",
    "watch_dags",
    "pool",
    "pool_slots",
    "priority_weight",
    "out_quota_mb",
    "mounts",
    "secrets",
    "allow_http",
    "record_http",
];

const ID_RULE: &str = "use only letters, digits, \"_\", \".\" and \"-\"";

/// The start of the file: where file-level problems (a missing field) point.
const FILE_START: Range<usize> = 0..0;

/// Parses and validates one DAG file.
///
/// `file` names the file in diagnostics; `text` is its content. `resolve` is called once per
/// well-formed task plugin reference and returns the pinned `"sha256:<64 hex>"` id, or a message
/// that is reported at the task's `plugin` field. Every problem of the file is reported, sorted by
/// position (if the TOML itself is broken, only its syntax errors: the rest cannot be read
/// reliably). On success the [`Dag`] has its tasks in a topological order.
///
/// ```
/// use sandflow_core::dag::{parse_dag, Caps, PluginRef};
///
/// let text = r#"
///     id = "hello"
///     schedule = "@daily"
///     flow = ["extract >> load"]
///     [tasks.extract]
///     plugin = "plugins/extract.wasm"
///     [tasks.load]
///     plugin = "plugins/missing.wasm"
/// "#;
/// let pin = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
/// let mut resolve = |plugin: &PluginRef| match plugin.as_str() {
///     "plugins/extract.wasm" => Ok(pin.to_owned()),
///     other => Err(format!("no such file: {other}")),
/// };
/// let errors = parse_dag("dags/hello.toml", text, &Caps::default(), &mut resolve).unwrap_err();
/// assert_eq!(
///     errors[0].to_string(),
///     "dags/hello.toml:8:14: tasks.load.plugin: no such file: plugins/missing.wasm"
/// );
/// ```
pub fn parse_dag(
    file: &str,
    text: &str,
    caps: &Caps,
    resolve: &mut dyn FnMut(&PluginRef) -> Result<String, String>,
) -> Result<Dag, Vec<Diagnostic>> {
    let mut reader = Reader::new(file, text);
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for error in &syntax_errors {
            report_syntax_error(&mut reader, text, error);
        }
        return Err(reader.finish());
    }
    let root = root.get_ref();
    reader.known_fields(root, "", DAG_FIELDS);
    let mut dag = read_dag_fields(&mut reader, root);
    let defaults = read_defaults(&mut reader, root, caps);
    let mut context = TaskContext { defaults, caps, resolve, map_checks: Vec::new() };
    let mut dependencies = read_flow(&mut reader, root);
    let (tasks, task_dependencies) = read_tasks(&mut reader, root, &mut context);
    dependencies.extend(task_dependencies);
    dag.tasks = link(&mut reader, tasks, &dependencies);
    for check in context.map_checks {
        let task = dag.tasks.iter().find(|t| t.id == check.task);
        if task.is_some_and(|t| !t.upstream.contains(&check.input)) {
            let message = format!(
                "maps over inputs of {:?}, which is not a direct upstream task of {:?}",
                check.input, check.task
            );
            reader.error(check.span, &check.field, message);
        }
    }
    if reader.has_errors() {
        Err(reader.finish())
    } else {
        Ok(dag)
    }
}

fn report_syntax_error(reader: &mut Reader<'_>, text: &str, error: &toml::de::Error) {
    let span = error.span().unwrap_or(FILE_START);
    let mut message = error.message().trim().replace('\n', "; ");
    if message == "duplicate key" {
        let key = text.get(span.clone()).unwrap_or_default();
        let quoted = key.starts_with(['"', '\'']);
        message = if quoted { format!("duplicate key {key}") } else { format!("duplicate key {key:?}") };
    }
    reader.error(span, "", message);
}

/// Reads field `name` of `table` (at `path`) with `read`, if present.
fn read_field<'v, 'i, 't, T>(
    reader: &mut Reader<'t>,
    table: &'v DeTable<'i>,
    path: &str,
    name: &str,
    read: impl FnOnce(&mut Reader<'t>, &'v Value<'i>, &str) -> Option<T>,
) -> Option<T> {
    let value = table.get(name)?;
    read(reader, value, &join(path, name))
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(is_id_char)
}

/// Why `id` is not a valid id (`what`: "id", "task id", "pool name"), if it is not.
fn id_problem(id: &str, what: &str) -> Option<String> {
    let length = id.chars().count();
    if length > MAX_ID_LEN {
        Some(format!("{what} {:?} is {length} characters long; the limit is {MAX_ID_LEN}", shorten(id, 40)))
    } else if !is_valid_id(id) {
        Some(format!("invalid {what} {:?}: {ID_RULE}", shorten(id, 60)))
    } else {
        None
    }
}

/// The DAG's own fields; `tasks` is left empty.
fn read_dag_fields(reader: &mut Reader<'_>, root: &DeTable<'_>) -> Dag {
    let description = read_field(reader, root, "", "description", Reader::string);
    let tags = read_field(reader, root, "", "tags", Reader::strings);
    let owner = read_field(reader, root, "", "owner", Reader::string);
    let (start_date, end_date) = read_dates(reader, root);
    Dag {
        id: read_dag_id(reader, root),
        description,
        tags: tags.unwrap_or_default().into_iter().map(Spanned::into_inner).collect(),
        owner,
        schedule: read_field(reader, root, "", "schedule", read_schedule).unwrap_or_default(),
        start_date,
        end_date,
        catchup: read_field(reader, root, "", "catchup", Reader::bool).unwrap_or(false),
        max_active_runs: read_field(reader, root, "", "max_active_runs", read_max_active_runs)
            .unwrap_or(Dag::DEFAULT_MAX_ACTIVE_RUNS),
        max_active_tasks: read_field(reader, root, "", "max_active_tasks", read_max_active_runs)
            .unwrap_or(Dag::DEFAULT_MAX_ACTIVE_TASKS),
        paused: read_field(reader, root, "", "is_paused_upon_creation", Reader::bool),
        tasks: Vec::new(),
    }
}

fn read_dag_id(reader: &mut Reader<'_>, root: &DeTable<'_>) -> String {
    let Some(value) = root.get("id") else {
        reader.error(FILE_START, "id", "missing required field \"id\"");
        return String::new();
    };
    let id = reader.string(value, "id").unwrap_or_default();
    if let Some(problem) = id_problem(&id, "id").filter(|_| value.get_ref().is_str()) {
        reader.error(value.span(), "id", problem);
    }
    id
}

fn read_schedule(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Schedule> {
    let expr = reader.string(value, field)?;
    Schedule::cron(&expr).map_err(|error| reader.error(value.span(), field, error.to_string())).ok()
}

fn read_max_active_runs(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<u32> {
    let runs = reader.u32(value, field)?;
    at_least_one(reader, value, field, runs)
}

/// `number`, or `None` after reporting that it is zero.
fn at_least_one<T: PartialEq + From<u8> + Display>(
    reader: &mut Reader<'_>,
    value: &Value<'_>,
    field: &str,
    number: T,
) -> Option<T> {
    if number == T::from(0) {
        reader.error(value.span(), field, format!("must be at least 1, found {number}"));
        None
    } else {
        Some(number)
    }
}

/// `start_date` and `end_date`, refusing an end before the start.
fn read_dates(reader: &mut Reader<'_>, root: &DeTable<'_>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let start = read_field(reader, root, "", "start_date", Reader::date);
    let end = read_field(reader, root, "", "end_date", Reader::date);
    if let (Some(start), Some(end), Some(value)) = (start, end, root.get("end_date")) {
        if end < start {
            let message = format!("end_date {} is before start_date {}", rfc3339(end), rfc3339(start));
            reader.error(value.span(), "end_date", message);
        }
    }
    (start, end)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The task settings of `[defaults]` or of one task; `None` where not written.
#[derive(Debug, Default, Clone)]
struct Settings {
    trigger_rule: Option<TriggerRule>,
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    retry_exponential_backoff: Option<bool>,
    max_retry_delay: Option<Duration>,
    timeout: Option<Duration>,
    fuel: Option<u64>,
    memory_mb: Option<u64>,
}

impl Settings {
    /// Reads the settings of `table` (at `path`), checking them against the caps. Unknown fields
    /// are the caller's to check: a task table has more fields than `[defaults]`.
    fn read(reader: &mut Reader<'_>, table: &DeTable<'_>, path: &str, caps: &Caps) -> Settings {
        let retries = |reader: &mut Reader<'_>, value: &Value<'_>, field: &str| {
            let retries = reader.u32(value, field)?;
            check_cap(reader, value, field, retries, ("max_retries", caps.max_retries))
        };
        let timeout =
            |reader: &mut Reader<'_>, value: &Value<'_>, field: &str| read_timeout(reader, value, field, caps.timeout);
        let fuel = |reader: &mut Reader<'_>, value: &Value<'_>, field: &str| {
            read_limit(reader, value, field, ("fuel", caps.fuel))
        };
        let memory_mb = |reader: &mut Reader<'_>, value: &Value<'_>, field: &str| {
            read_limit(reader, value, field, ("memory_mb", caps.memory_mb))
        };
        Settings {
            trigger_rule: read_field(reader, table, path, "trigger_rule", read_trigger_rule),
            retries: read_field(reader, table, path, "retries", retries),
            retry_delay: read_field(reader, table, path, "retry_delay", Reader::duration),
            retry_exponential_backoff: read_field(reader, table, path, "retry_exponential_backoff", Reader::bool),
            max_retry_delay: read_field(reader, table, path, "max_retry_delay", Reader::duration),
            timeout: read_field(reader, table, path, "timeout", timeout),
            fuel: read_field(reader, table, path, "fuel", fuel),
            memory_mb: read_field(reader, table, path, "memory_mb", memory_mb),
        }
    }

    /// These settings, completed by `defaults` where not written.
    fn or(self, defaults: &Settings) -> Settings {
        Settings {
            trigger_rule: self.trigger_rule.or(defaults.trigger_rule),
            retries: self.retries.or(defaults.retries),
            retry_delay: self.retry_delay.or(defaults.retry_delay),
            retry_exponential_backoff: self.retry_exponential_backoff.or(defaults.retry_exponential_backoff),
            max_retry_delay: self.max_retry_delay.or(defaults.max_retry_delay),
            timeout: self.timeout.or(defaults.timeout),
            fuel: self.fuel.or(defaults.fuel),
            memory_mb: self.memory_mb.or(defaults.memory_mb),
        }
    }
}

fn read_trigger_rule(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<TriggerRule> {
    let name = reader.string(value, field)?;
    let rule = name.parse::<TriggerRule>();
    rule.map_err(|error| reader.error(value.span(), field, error.to_string())).ok()
}

/// A positive integer limit (fuel, memory) under its cap, given as (name, value).
fn read_limit(reader: &mut Reader<'_>, value: &Value<'_>, field: &str, cap: (&str, u64)) -> Option<u64> {
    let number = reader.u64(value, field)?;
    let number = at_least_one(reader, value, field, number)?;
    check_cap(reader, value, field, number, cap)
}

fn read_timeout(reader: &mut Reader<'_>, value: &Value<'_>, field: &str, cap: Duration) -> Option<Duration> {
    let timeout = reader.duration(value, field)?;
    if timeout.is_zero() {
        reader.error(value.span(), field, "must be longer than 0s");
        return None;
    }
    if timeout > cap {
        let (shown, cap) = (humantime::format_duration(timeout), humantime::format_duration(cap));
        reader.error(value.span(), field, format!("{shown} exceeds the cap timeout = {cap}"));
        return None;
    }
    Some(timeout)
}

/// `number`, or `None` after reporting that it exceeds the cap, given as (name, value).
fn check_cap<T: PartialOrd + Display>(
    reader: &mut Reader<'_>,
    value: &Value<'_>,
    field: &str,
    number: T,
    (cap_name, cap): (&str, T),
) -> Option<T> {
    if number <= cap {
        return Some(number);
    }
    let message = format!("{number} exceeds the cap {cap_name} = {cap}");
    reader.error(value.span(), field, message);
    None
}

fn read_defaults(reader: &mut Reader<'_>, root: &DeTable<'_>, caps: &Caps) -> Settings {
    let Some(table) = root.get("defaults").and_then(|value| reader.table(value, "defaults")) else {
        return Settings::default();
    };
    reader.known_fields(table, "defaults", SETTINGS_FIELDS);
    Settings::read(reader, table, "defaults", caps)
}

/// A task id mentioned by a dependency, and where it is written.
#[derive(Debug, Clone)]
struct Mention {
    id: String,
    at: usize,
}

/// A dependency as declared (in a task's `upstream` or in `flow`), with where.
#[derive(Debug, Clone)]
struct Dependency {
    upstream: Mention,
    downstream: Mention,
    /// Where the dependency itself is written: the `upstream` entry, or the flow's arrow.
    at: usize,
    field: String,
}

/// What reading every task needs besides the reader.
struct TaskContext<'a> {
    defaults: Settings,
    caps: &'a Caps,
    resolve: &'a mut dyn FnMut(&PluginRef) -> Result<String, String>,
    map_checks: Vec<MapCheck>,
}

/// Every task in file order, with the dependencies their `upstream` fields declare.
fn read_tasks(
    reader: &mut Reader<'_>,
    root: &DeTable<'_>,
    context: &mut TaskContext<'_>,
) -> (Vec<Task>, Vec<Dependency>) {
    const NO_TASKS: &str = "a DAG needs at least one task: add a [tasks.<id>] table";
    let Some(value) = root.get("tasks") else {
        reader.error(FILE_START, "tasks", NO_TASKS);
        return (Vec::new(), Vec::new());
    };
    let Some(table) = reader.table(value, "tasks") else {
        return (Vec::new(), Vec::new());
    };
    if table.is_empty() {
        reader.error(value.span(), "tasks", NO_TASKS);
    }
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut dependencies = Vec::new();
    let tasks = entries
        .into_iter()
        .map(|(key, value)| {
            let id = Spanned::new(key.span(), key.get_ref().to_string());
            read_task(reader, context, &id, value, &mut dependencies)
        })
        .collect();
    (tasks, dependencies)
}

/// One task. Whatever cannot be read is reported and replaced by a default, so the task still
/// takes part in the graph.
fn read_task(
    reader: &mut Reader<'_>,
    context: &mut TaskContext<'_>,
    id: &Spanned<String>,
    value: &Value<'_>,
    dependencies: &mut Vec<Dependency>,
) -> Task {
    let path = join("tasks", id.get_ref());
    if let Some(problem) = id_problem(id.get_ref(), "task id") {
        reader.error(id.span(), &path, problem);
    }
    let table = reader.table(value, &path);
    let empty = DeTable::new();
    let table = table.unwrap_or(&empty);
    if value.get_ref().is_table() {
        reader.known_fields(table, &path, TASK_FIELDS);
    }
    let (plugin, plugin_id) = read_plugin(reader, context, id, table, &path);
    let params = read_field(reader, table, &path, "params", |reader, value, field| {
        reader.table(value, field).and_then(|params| reader.json_object(params, field))
    });
    dependencies.extend(read_upstream(reader, id, table, &path));
    let settings = Settings::read(reader, table, &path, context.caps).or(&context.defaults);
    let extras = read_extras(reader, table, &path, id.get_ref(), &mut context.map_checks);
    let grants = read_grants(reader, table, &path);
    Task {
        id: id.get_ref().clone(),
        plugin,
        plugin_id,
        params: params.unwrap_or_default(),
        upstream: Vec::new(),
        trigger_rule: settings.trigger_rule.unwrap_or_default(),
        retries: settings.retries.unwrap_or(0),
        retry_delay: settings.retry_delay.unwrap_or(Task::DEFAULT_RETRY_DELAY),
        retry_exponential_backoff: settings.retry_exponential_backoff.unwrap_or(false),
        max_retry_delay: settings.max_retry_delay,
        timeout: settings.timeout,
        fuel: settings.fuel,
        memory_mb: settings.memory_mb,
        kind: extras.kind,
        map_over: extras.map_over,
        poke_interval: extras.poke_interval,
        watch_dags: extras.watch_dags,
        pool: extras.pool,
        pool_slots: extras.pool_slots,
        priority_weight: extras.priority_weight,
        grants,
    }
}

/// What the task may touch (`out_quota_mb`, `mounts`, `secrets`, `allow_http`, `record_http`):
/// names checked, origins normalised, lists sorted and deduplicated. Whether the server allows
/// them is [`super::GrantPolicy`]'s call, at load and upload.
fn read_grants(reader: &mut Reader<'_>, table: &DeTable<'_>, path: &str) -> Grants {
    let out_quota_mb = read_field(reader, table, path, "out_quota_mb", Reader::u64);
    let names = |reader: &mut Reader<'_>, field: &str, what: &str| -> Vec<String> {
        let names = read_field(reader, table, path, field, Reader::strings).unwrap_or_default();
        let mut valid = std::collections::BTreeSet::new();
        for name in names {
            match grant_name_problem(name.get_ref(), what) {
                Some(problem) => reader.error(name.span(), &join(path, field), problem),
                None => {
                    valid.insert(name.into_inner());
                }
            }
        }
        valid.into_iter().collect()
    };
    let mounts = names(reader, "mounts", "mount name");
    let secrets = names(reader, "secrets", "secret name");
    let origins = read_field(reader, table, path, "allow_http", Reader::strings).unwrap_or_default();
    let mut allow_http = std::collections::BTreeSet::new();
    for origin in origins {
        match Origin::parse(origin.get_ref()) {
            Ok(parsed) => {
                allow_http.insert(parsed.to_string());
            }
            Err(problem) => reader.error(origin.span(), &join(path, "allow_http"), problem),
        }
    }
    let record_http = read_field(reader, table, path, "record_http", |reader, value, field| {
        let record = reader.bool(value, field)?;
        if record && allow_http.is_empty() {
            reader.error(
                value.span(),
                field,
                "record_http needs allow_http: the task makes no HTTP requests to record",
            );
        }
        Some(record)
    })
    .unwrap_or(false);
    Grants { out_quota_mb, mounts, secrets, allow_http: allow_http.into_iter().collect(), record_http }
}

/// The fields that shape how a task runs rather than what limits it: kind, mapping, sensor
/// settings, pool and priority.
struct Extras {
    kind: TaskKind,
    map_over: Option<String>,
    poke_interval: Duration,
    watch_dags: Vec<String>,
    pool: String,
    pool_slots: u32,
    priority_weight: i64,
}

/// A `map_over = "inputs.<task>..."` whose task must be a direct upstream, checked once the graph
/// is linked.
pub(super) struct MapCheck {
    task: String,
    input: String,
    span: Range<usize>,
    field: String,
}

fn read_extras(
    reader: &mut Reader<'_>,
    table: &DeTable<'_>,
    path: &str,
    task_id: &str,
    map_checks: &mut Vec<MapCheck>,
) -> Extras {
    let kind = read_field(reader, table, path, "kind", |reader, value, field| {
        let name = reader.string(value, field)?;
        match name.as_str() {
            "task" => Some(TaskKind::Task),
            "branch" => Some(TaskKind::Branch),
            "sensor" => Some(TaskKind::Sensor),
            _ => {
                reader.error(
                    value.span(),
                    field,
                    format!("unknown kind {name:?}, expected one of \"task\", \"branch\", \"sensor\""),
                );
                None
            }
        }
    })
    .unwrap_or_default();
    let map_over = read_field(reader, table, path, "map_over", |reader, value, field| {
        let expr = reader.string(value, field)?;
        let parts: Vec<&str> = expr.split('.').collect();
        let well_formed =
            parts.len() >= 2 && matches!(parts[0], "conf" | "inputs") && parts.iter().all(|p| !p.is_empty());
        if !well_formed {
            reader.error(
                value.span(),
                field,
                format!("{expr:?} must be conf.<path> or inputs.<upstream task>[.<path>]"),
            );
            return None;
        }
        if parts[0] == "inputs" {
            map_checks.push(MapCheck {
                task: task_id.to_string(),
                input: parts[1].to_string(),
                span: value.span(),
                field: field.to_string(),
            });
        }
        Some(expr)
    });
    let only_for_sensors = |reader: &mut Reader<'_>, value: &Value<'_>, field: &str| {
        if kind != TaskKind::Sensor {
            reader.error(value.span(), field, "only sensor tasks (kind = \"sensor\") take this field");
        }
    };
    let poke_interval = read_field(reader, table, path, "poke_interval", |reader, value, field| {
        only_for_sensors(reader, value, field);
        let interval = reader.duration(value, field)?;
        if interval.is_zero() {
            reader.error(value.span(), field, "must be longer than 0s");
            return None;
        }
        Some(interval)
    })
    .unwrap_or(Task::DEFAULT_POKE_INTERVAL);
    let watch_dags = read_field(reader, table, path, "watch_dags", |reader, value, field| {
        only_for_sensors(reader, value, field);
        reader.strings(value, field)
    })
    .unwrap_or_default()
    .into_iter()
    .map(Spanned::into_inner)
    .collect();
    if let (Some(_), Some(value)) = (&map_over, table.get("kind")) {
        if kind != TaskKind::Task {
            reader.error(
                value.span(),
                &join(path, "kind"),
                format!("a {} task cannot be mapped (map_over)", kind.as_str()),
            );
        }
    }
    let pool = read_field(reader, table, path, "pool", |reader, value, field| {
        let name = reader.string(value, field)?;
        if let Some(problem) = id_problem(&name, "pool name") {
            reader.error(value.span(), field, problem);
            return None;
        }
        Some(name)
    })
    .unwrap_or_else(|| Task::DEFAULT_POOL.to_string());
    let pool_slots = read_field(reader, table, path, "pool_slots", |reader, value, field| {
        let slots = reader.u32(value, field)?;
        at_least_one(reader, value, field, slots)
    })
    .unwrap_or(1);
    let priority_weight = read_field(reader, table, path, "priority_weight", |reader, value, field| {
        let number = reader.json(value, field)?;
        let weight = number.as_i64();
        if weight.is_none() {
            reader.error(value.span(), field, format!("must be a whole number, found {number}"));
        }
        weight
    })
    .unwrap_or(1);
    Extras { kind, map_over, poke_interval, watch_dags, pool, pool_slots, priority_weight }
}

/// The task's plugin as written and as resolved (empty after an error).
fn read_plugin(
    reader: &mut Reader<'_>,
    context: &mut TaskContext<'_>,
    id: &Spanned<String>,
    table: &DeTable<'_>,
    path: &str,
) -> (PluginRef, String) {
    let field = join(path, "plugin");
    let unresolved = (PluginRef::Path(String::new()), String::new());
    let Some(value) = table.get("plugin") else {
        reader.error(id.span(), &field, "missing required field \"plugin\"");
        return unresolved;
    };
    let Some(plugin) = reader
        .string(value, &field)
        .and_then(|text| plugin_ref(text).map_err(|message| reader.error(value.span(), &field, message)).ok())
    else {
        return unresolved;
    };
    match (context.resolve)(&plugin) {
        Ok(plugin_id) if is_plugin_id(&plugin_id) => (plugin, plugin_id),
        Ok(other) => {
            let message = format!("{plugin} resolved to {other:?}, which is not a \"sha256:\" plugin id");
            reader.error(value.span(), &field, message);
            (plugin, String::new())
        }
        Err(message) => {
            reader.error(value.span(), &field, message);
            (plugin, String::new())
        }
    }
}

/// A `plugin` field: a pinned id, or a relative path.
fn plugin_ref(text: String) -> Result<PluginRef, String> {
    if text.starts_with("sha256:") {
        if is_plugin_id(&text) {
            return Ok(PluginRef::Id(text));
        }
        return Err(format!("invalid plugin id {text:?}: expected \"sha256:\" followed by 64 lowercase hex digits"));
    }
    if text.is_empty() {
        return Err("expected a path to a .wasm file or a \"sha256:\" id, found an empty string".to_owned());
    }
    // A root, or a Windows drive letter (`C:`): not relative to anything.
    if std::path::Path::new(&text).has_root() || text.starts_with('\\') || text.get(1..2) == Some(":") {
        return Err(format!("plugin path {text:?} must be relative to the DAG file's folder"));
    }
    Ok(PluginRef::Path(text))
}

/// The dependencies declared by a task's `upstream` list.
fn read_upstream(reader: &mut Reader<'_>, id: &Spanned<String>, table: &DeTable<'_>, path: &str) -> Vec<Dependency> {
    let field = join(path, "upstream");
    let Some(entries) = table.get("upstream").and_then(|value| reader.strings(value, &field)) else {
        return Vec::new();
    };
    let downstream = Mention { id: id.get_ref().clone(), at: id.span().start };
    let dependency = |(index, entry): (usize, Spanned<String>)| Dependency {
        upstream: Mention { id: entry.get_ref().clone(), at: entry.span().start },
        downstream: downstream.clone(),
        at: entry.span().start,
        field: format!("{field}[{index}]"),
    };
    entries.into_iter().enumerate().map(dependency).collect()
}

/// The dependencies declared by `flow` expressions.
fn read_flow(reader: &mut Reader<'_>, root: &DeTable<'_>) -> Vec<Dependency> {
    let Some(expressions) = root.get("flow").and_then(|value| reader.strings(value, "flow")) else {
        return Vec::new();
    };
    let mut dependencies = Vec::new();
    for (index, expression) in expressions.iter().enumerate() {
        let field = format!("flow[{index}]");
        let text = expression.get_ref();
        let at = |offset| reader.offset_in_string(expression.span(), text, offset);
        match flow::parse(text) {
            Ok(edges) => dependencies.extend(edges.into_iter().map(|edge| Dependency {
                upstream: Mention { id: edge.upstream.text.to_owned(), at: at(edge.upstream.offset) },
                downstream: Mention { id: edge.downstream.text.to_owned(), at: at(edge.downstream.offset) },
                at: at(edge.arrow),
                field: field.clone(),
            })),
            Err(error) => {
                let offset = at(error.offset);
                reader.error(offset..offset, &field, error.to_string());
            }
        }
    }
    dependencies
}

/// Checks the dependencies, fills each task's `upstream` and returns the tasks in topological
/// order (or as they are, after reporting cycles).
fn link(reader: &mut Reader<'_>, mut tasks: Vec<Task>, dependencies: &[Dependency]) -> Vec<Task> {
    let graph = connect(reader, &mut tasks, dependencies);
    match graph.order() {
        Ok(order) => {
            let mut slots: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
            order.into_iter().filter_map(|number| slots.get_mut(number).and_then(Option::take)).collect()
        }
        Err(cycles) => {
            for cycle in cycles {
                let mut path: Vec<&str> = cycle.tasks.iter().map(|&number| tasks[number].id.as_str()).collect();
                path.extend(path.first().copied());
                let closing = cycle.closing;
                let message = format!("cycle: {}", path.join(" -> "));
                reader.error(closing.at..closing.at, &closing.field, message);
            }
            tasks
        }
    }
}

/// The graph of the dependencies between known tasks, filling each task's `upstream` (sorted,
/// deduplicated). Unknown ids and self-dependencies are reported and left out.
fn connect<'d>(
    reader: &mut Reader<'_>,
    tasks: &mut [Task],
    dependencies: &'d [Dependency],
) -> DepGraph<&'d Dependency> {
    let index: HashMap<String, usize> =
        tasks.iter().enumerate().map(|(number, task)| (task.id.clone(), number)).collect();
    let mut graph = DepGraph::new(tasks.len());
    let mut seen = HashSet::new();
    let mut unknown_reported = HashSet::new();
    for dependency in dependencies {
        let mut lookup = |mention: &Mention| {
            let number = index.get(&mention.id).copied();
            if number.is_none() && unknown_reported.insert((mention.at, &dependency.field)) {
                let message = format!("unknown task {:?}", mention.id);
                reader.error(mention.at..mention.at, &dependency.field, message);
            }
            number
        };
        let (Some(upstream), Some(downstream)) = (lookup(&dependency.upstream), lookup(&dependency.downstream)) else {
            continue;
        };
        if upstream == downstream {
            let id = &dependency.upstream.id;
            let message = format!("task {id:?} cannot be upstream of itself");
            reader.error(dependency.at..dependency.at, &dependency.field, message);
        } else if seen.insert((upstream, downstream)) {
            graph.add(upstream, downstream, dependency);
            let upstream_id = tasks[upstream].id.clone();
            tasks[downstream].upstream.push(upstream_id);
        }
    }
    for task in tasks {
        task.upstream.sort();
    }
    graph
}
