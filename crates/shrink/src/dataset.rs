//! ONNX test data sets: a folder of `input_<j>.pb` and `output_<j>.pb` TensorProto files.
use shrink_ir::Tensor;
use std::path::{Path, PathBuf};

/// Named tensors read from a data set folder, ordered by their index `j`.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

fn numbered(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(j) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".pb"))
            .and_then(|j| j.parse::<usize>().ok())
        {
            found.push((j, p));
        }
    }
    found.sort();
    for (k, (j, p)) in found.iter().enumerate() {
        if *j != k {
            return Err(format!(
                "{}: expected {prefix}{k}.pb before {}",
                dir.display(),
                p.display()
            ));
        }
    }
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Loads a data set folder; `cap` bounds each tensor's size in bytes.
pub fn load_dataset(dir: &Path, cap: usize) -> Result<DataSet, String> {
    let load = |prefix: &str| -> Result<Vec<(String, Tensor)>, String> {
        numbered(dir, prefix)?
            .iter()
            .map(|p| shrink_onnx::load_tensor_pb(p, cap))
            .collect()
    };
    Ok(DataSet {
        inputs: load("input_")?,
        outputs: load("output_")?,
    })
}

/// The `test_data_set_*` folders next to a model, sorted.
pub fn datasets_next_to(model: &Path) -> Vec<PathBuf> {
    let dir = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("test_data_set_"))
                })
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    sets
}
