//! `type = "dashboard"`: a stream's results shown live on a page of the web UI
//! (`/dashboards/<name>`): the latest batch as a table (top N), a bar chart of its top keys and
//! a line chart of chosen keys (or the top keys) over the recent batches. The output keeps
//! what those need in memory, bounded; the UI reads it from [`boards`].

use super::claim::Claim;
use super::{Output, OutputContext, Replay, Sink};
use crate::config::{ConfigError, ConnectorTable};
use crate::record::{Shape, StreamType, write_value};
use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use spate_guest::{Partition, ValueType};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// `type = "dashboard"`: the fields of the table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Fields {
    /// The page's name in `/dashboards/<name>` (default: the job's name).
    name: Option<String>,
    /// Heading of the page (default: the name).
    title: Option<String>,
    /// Rows of the table and bars of the bar chart (default 10).
    top: Option<usize>,
    /// `"bar"`, `"line"` or `"both"` (default).
    chart: Option<Chart>,
    /// Keys drawn in the line chart (default: the latest batch's top keys).
    keys: Option<Vec<String>>,
    /// Batches the line chart spans (default 60).
    history: Option<usize>,
}

/// Which charts a dashboard draws.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Chart {
    /// A bar chart of the latest batch's top keys.
    Bar,
    /// A line chart over the recent batches.
    Line,
    /// Both.
    Both,
}

/// Bounds what one dashboard keeps, whatever its settings.
const MAX_TOP: usize = 1000;
const MAX_HISTORY: usize = 10_000;

/// Reads a dashboard output's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    let fields: Fields = table.fields()?;
    let name = fields.name.unwrap_or_else(|| table.job_identity().0);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(table.error(format!(
            "dashboard name `{name}`: use letters, digits, `-`, `_` and `.` (it is part of the \
             page's address)"
        )));
    }
    let top = fields.top.unwrap_or(10);
    if top == 0 || top > MAX_TOP {
        return Err(table.error(format!("top = {top}: expected 1 to {MAX_TOP}")));
    }
    let history = fields.history.unwrap_or(60);
    if history == 0 || history > MAX_HISTORY {
        return Err(table.error(format!("history = {history}: expected 1 to {MAX_HISTORY}")));
    }
    // Without a policy the process is one trust domain and names are the process's; under one,
    // each tenant names its own pages and cannot take (or hide) another's.
    let tenant = table.policy().map(|_| table.job_identity().1);
    Ok(Box::new(DashboardOutput {
        tenant,
        settings: Settings {
            title: fields.title.unwrap_or_else(|| name.clone()),
            name,
            top,
            chart: fields.chart.unwrap_or(Chart::Both),
            keys: fields.keys.unwrap_or_default(),
            history,
        },
    }))
}

/// A dashboard's settings, as the page shows them.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Its name in `/dashboards/<name>`.
    pub name: String,
    /// The page's heading.
    pub title: String,
    /// Rows and bars shown.
    pub top: usize,
    /// Which charts.
    pub chart: Chart,
    /// Keys of the line chart (empty: the latest top keys).
    pub keys: Vec<String>,
    /// Batches the line chart spans.
    pub history: usize,
}

#[derive(Debug)]
struct DashboardOutput {
    /// The tenant whose pages it is among, under a policy.
    tenant: Option<String>,
    settings: Settings,
}

impl Output for DashboardOutput {
    fn describe(&self, stream: &str) -> String {
        format!(
            "dashboard '{stream}': live page /dashboards/{} (top {}, {:?} chart, {} batches)",
            self.settings.name, self.settings.top, self.settings.chart, self.settings.history
        )
    }

    fn replay(&self) -> Replay {
        // A replayed batch is shown again; the page holds no history across restarts.
        Replay::Replaces
    }

    fn open(&self, context: &OutputContext<'_>, _types: &StreamType) -> Result<Box<dyn Sink>> {
        let name = &self.settings.name;
        let scope = self.tenant.as_deref().unwrap_or_default();
        let claim = Claim::take(format!("dashboard {scope}/{name}")).map_err(|_| {
            anyhow!(
                "dashboard '{name}' is already shown by another output of this process: give \
                 each dashboard output its own `name`"
            )
        })?;
        let board = Arc::new(Board {
            tenant: self.tenant.clone(),
            settings: self.settings.clone(),
            job: context.job.to_owned(),
            data: Mutex::new(Data::default()),
        });
        lock(&BOARDS).retain(|b| b.settings.name != *name || b.tenant != self.tenant);
        lock(&BOARDS).push(board.clone());
        Ok(Box::new(DashboardSink {
            board,
            _claim: claim,
        }))
    }
}

/// Every dashboard of the process, as their outputs opened them.
static BOARDS: Mutex<Vec<Arc<Board>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The dashboards of the process.
pub fn boards() -> Vec<Arc<Board>> {
    lock(&BOARDS).clone()
}

/// One dashboard: its settings and what its page shows.
pub struct Board {
    /// The tenant whose pages it is among, when its job runs under a policy (`spate serve`
    /// shows each tenant only its own).
    pub tenant: Option<String>,
    /// Its settings.
    pub settings: Settings,
    /// The job writing it.
    pub job: String,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    latest_time: Option<u64>,
    latest: Vec<Row>,
    latest_records: usize,
    /// Per recent batch, the line chart's keys and their values.
    history: VecDeque<(u64, BTreeMap<String, f64>)>,
}

/// One record of the latest batch, as shown.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The key as Spark prints it (empty for an unkeyed stream).
    pub key: String,
    /// The value as Spark prints it.
    pub value: String,
    /// The value as a number, when it is one (what the charts draw).
    pub number: Option<f64>,
}

/// What a dashboard page shows at one moment.
#[derive(Debug, Serialize)]
pub struct View {
    /// Its settings.
    #[serde(flatten)]
    pub settings: Settings,
    /// The job writing it.
    pub job: String,
    /// The latest batch's time, if one came.
    pub batch_time_ms: Option<u64>,
    /// Records in the latest batch.
    pub records: usize,
    /// The latest batch's top rows (by value, largest first, when values are numbers).
    pub rows: Vec<Row>,
    /// Batch times of the line chart.
    pub times: Vec<u64>,
    /// Per key of the line chart, its value at each of `times` (null where absent).
    pub series: BTreeMap<String, Vec<Option<f64>>>,
}

impl Board {
    /// What the page shows now.
    pub fn view(&self) -> View {
        let data = lock(&self.data);
        let keys: Vec<String> = if self.settings.keys.is_empty() {
            data.latest
                .iter()
                .filter(|r| r.number.is_some())
                .map(|r| r.key.clone())
                .collect()
        } else {
            self.settings.keys.clone()
        };
        let times = data.history.iter().map(|(t, _)| *t).collect();
        let series = keys
            .into_iter()
            .map(|key| {
                let values = data
                    .history
                    .iter()
                    .map(|(_, values)| values.get(&key).copied())
                    .collect();
                (key, values)
            })
            .collect();
        View {
            settings: self.settings.clone(),
            job: self.job.clone(),
            batch_time_ms: data.latest_time,
            records: data.latest_records,
            rows: data.latest.clone(),
            times,
            series,
        }
    }
}

struct DashboardSink {
    board: Arc<Board>,
    _claim: Claim,
}

/// A value as a number, when its type is one.
fn number(bytes: &[u8], shape: &Shape) -> Option<f64> {
    let fixed = <[u8; 8]>::try_from(bytes).ok()?;
    match shape.scalar()? {
        ValueType::I64 => Some(i64::from_le_bytes(fixed) as f64),
        ValueType::F64 => Some(f64::from_le_bytes(fixed)).filter(|v| v.is_finite()),
        _ => None,
    }
}

impl Sink for DashboardSink {
    fn write(
        &mut self,
        batch_time_ms: u64,
        partitions: &[Partition],
        types: &StreamType,
    ) -> Result<()> {
        let settings = &self.board.settings;
        let key_shape = types.key.clone().unwrap_or(Shape::TEXT);
        let mut rows = Vec::new();
        let mut records = 0;
        for partition in partitions {
            for record in partition.records() {
                records += 1;
                let mut key = String::new();
                if let Some(k) = record.key {
                    write_value(&mut key, k, &key_shape);
                }
                let mut value = String::new();
                write_value(&mut value, record.value, &types.value);
                let number = number(record.value, &types.value);
                rows.push(Row { key, value, number });
            }
        }
        // Largest numbers first (ties by key); a stream of non-numbers keeps its order.
        if rows.iter().any(|r| r.number.is_some()) {
            rows.sort_by(|a, b| {
                let (x, y) = (
                    a.number.unwrap_or(f64::NEG_INFINITY),
                    b.number.unwrap_or(f64::NEG_INFINITY),
                );
                y.total_cmp(&x).then_with(|| a.key.cmp(&b.key))
            });
        }
        let mut charted: BTreeMap<String, f64> = BTreeMap::new();
        if settings.keys.is_empty() {
            // More keys than the top are kept per batch, so that a key rising into the top
            // already has its recent history to draw.
            for row in rows.iter().take((settings.top * 5).max(50)) {
                if let Some(n) = row.number {
                    charted.insert(row.key.clone(), n);
                }
            }
        } else {
            for row in &rows {
                if let Some(n) = row.number.filter(|_| settings.keys.contains(&row.key)) {
                    charted.insert(row.key.clone(), n);
                }
            }
        }
        rows.truncate(settings.top);
        let mut data = lock(&self.board.data);
        data.latest_time = Some(batch_time_ms);
        data.latest = rows;
        data.latest_records = records;
        // A replayed batch replaces its earlier point.
        while data
            .history
            .back()
            .is_some_and(|(t, _)| *t >= batch_time_ms)
        {
            data.history.pop_back();
        }
        data.history.push_back((batch_time_ms, charted));
        while data.history.len() > settings.history {
            data.history.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_guest::Column;

    fn counts(pairs: &[(&str, i64)]) -> Partition {
        let mut keys = Column::default();
        let mut values = Column::default();
        for (k, v) in pairs {
            keys.push(k.as_bytes());
            values.push(&v.to_le_bytes());
        }
        Partition {
            keys: Some(keys),
            values,
            ..Default::default()
        }
    }

    static BOARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn board(keys: Vec<String>) -> DashboardSink {
        DashboardSink {
            board: Arc::new(Board {
                tenant: None,
                settings: Settings {
                    name: "t".into(),
                    title: "t".into(),
                    top: 2,
                    chart: Chart::Both,
                    keys,
                    history: 3,
                },
                job: "j".into(),
                data: Mutex::new(Data::default()),
            }),
            // One claim per board: the tests run side by side in one process.
            _claim: Claim::take(format!(
                "dashboard test {}",
                BOARDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ))
            .unwrap(),
        }
    }

    #[test]
    fn the_latest_batch_shows_its_top_rows_and_history_is_bounded() {
        let mut sink = board(Vec::new());
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        for t in 1..=4 {
            let batch = counts(&[("a", t), ("b", 10), ("c", 1)]);
            sink.write(t as u64 * 1000, &[batch], &types).unwrap();
        }
        let view = sink.board.view();
        assert_eq!(view.batch_time_ms, Some(4000));
        assert_eq!(view.records, 3);
        let shown: Vec<(&str, &str)> = view
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(shown, [("b", "10"), ("a", "4")]);
        assert_eq!(view.times, [2000, 3000, 4000]);
        assert_eq!(view.series["a"], [Some(2.0), Some(3.0), Some(4.0)]);
        // A replay of batch 3000 replaces the points from it on.
        sink.write(3000, &[counts(&[("a", 7)])], &types).unwrap();
        let view = sink.board.view();
        assert_eq!(view.times, [2000, 3000]);
        assert_eq!(view.series["a"], [Some(2.0), Some(7.0)]);
    }

    #[test]
    fn chosen_keys_are_charted_even_outside_the_top() {
        let mut sink = board(vec!["c".into()]);
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        sink.write(1000, &[counts(&[("a", 5), ("b", 9), ("c", 1)])], &types)
            .unwrap();
        let view = sink.board.view();
        assert_eq!(view.series.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(view.series["c"], [Some(1.0)]);
    }
}
