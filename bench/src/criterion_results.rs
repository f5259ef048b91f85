//! Reads the boundary micro-benchmarks' results from criterion's output directory.

use std::path::Path;

/// Mean time in nanoseconds of criterion benchmark `id` (`partition/native/1MB`).
pub fn mean_ns(criterion_dir: &Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(criterion_dir.join(id).join("new/estimates.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// One partition size's figures.
#[derive(Debug, serde::Serialize)]
pub struct PartitionCost {
    /// Partition size label.
    pub size: String,
    /// Mean µs natively.
    pub native_us: f64,
    /// Mean µs through the columnar Wasm boundary.
    pub columnar_us: f64,
    /// native / columnar time (1.0: no boundary cost).
    pub ratio: f64,
}

/// The boundary figures.
#[derive(Debug, serde::Serialize)]
pub struct Boundary {
    /// Per partition size.
    pub partitions: Vec<PartitionCost>,
    /// An empty `process` call, µs.
    pub empty_call_us: Option<f64>,
    /// Instantiation from the linked component plus `configure`, µs.
    pub instantiate_us: Option<f64>,
}

/// Collects what `cargo bench -p spate-bench --bench boundary` left in `criterion_dir`.
pub fn boundary(criterion_dir: &Path) -> Boundary {
    let partitions = ["1KB", "64KB", "1MB", "16MB"]
        .iter()
        .filter_map(|size| {
            let native = mean_ns(criterion_dir, &format!("partition/native/{size}"))?;
            let columnar = mean_ns(criterion_dir, &format!("partition/columnar/{size}"))?;
            Some(PartitionCost {
                size: (*size).to_owned(),
                native_us: native / 1e3,
                columnar_us: columnar / 1e3,
                ratio: native / columnar,
            })
        })
        .collect();
    Boundary {
        partitions,
        empty_call_us: mean_ns(criterion_dir, "fixed/empty-process-call").map(|n| n / 1e3),
        instantiate_us: mean_ns(criterion_dir, "fixed/instantiate-and-configure").map(|n| n / 1e3),
    }
}
