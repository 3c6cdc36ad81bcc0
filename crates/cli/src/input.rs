//! Input readers: a file or standard input, rows for the few-community
//! analysis (CSV, or a JSON document with its design), and events as
//! NDJSON, a JSON array or CSV. Every error names the file and line.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The text of `path`, or of standard input for `-`.
pub fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Reads CSV rows with a header; errors name the file, line and column.
pub fn read_rows(text: &str, file: &str) -> Result<Vec<commonlab_stats::rows::Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: cannot read the header line"))?
        .clone();
    let known = [
        "cluster",
        "period",
        "arm",
        "treated",
        "value",
        "covariate",
        "stratum",
    ];
    for h in headers.iter() {
        if !known.contains(&h) {
            bail!(
                "{file}:1: unknown column '{h}' (expected {})",
                known.join(", ")
            );
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(cluster) = col("cluster").filter(|_| col("value").is_some()) else {
        bail!("{file}:1: the columns 'cluster' and 'value' are required");
    };
    if col("arm").is_none() && col("treated").is_none() {
        bail!("{file}:1: one of the columns 'arm' or 'treated' is required");
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{file}:{line}: not a valid CSV record"))?;
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|s| !s.is_empty());
        let num = |name: &str| -> Result<Option<f64>> {
            match get(col(name)) {
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Some)
                    .ok_or_else(|| {
                        anyhow!("{file}:{line}: column '{name}': '{s}' is not a finite number")
                    }),
            }
        };
        let value =
            num("value")?.ok_or_else(|| anyhow!("{file}:{line}: column 'value' is empty"))?;
        let period =
            match get(col("period")) {
                None => None,
                Some(s) => Some(s.parse::<i64>().map_err(|_| {
                    anyhow!("{file}:{line}: column 'period': '{s}' is not an integer")
                })?),
            };
        let treated = match get(col("treated")) {
            None => None,
            Some("1" | "true" | "TRUE" | "True") => Some(true),
            Some("0" | "false" | "FALSE" | "False") => Some(false),
            Some(s) => bail!("{file}:{line}: column 'treated': '{s}' is not 0/1 or true/false"),
        };
        let cluster_name = get(Some(cluster))
            .ok_or_else(|| anyhow!("{file}:{line}: column 'cluster' is empty"))?;
        rows.push(commonlab_stats::rows::Row {
            cluster: cluster_name.to_string(),
            period,
            arm: get(col("arm")).map(str::to_string),
            treated,
            value,
            covariate: num("covariate")?,
            stratum: get(col("stratum")).map(str::to_string),
        });
    }
    if rows.is_empty() {
        bail!("{file}: no data rows");
    }
    Ok(rows)
}

/// Whether JSON `text` is a rows document (an object with `rows`), rather
/// than sufficient statistics. Only the top level is looked at; text that
/// is not a JSON object is left to the sufficient-statistics reader, which
/// reports where it fails.
pub fn is_rows_document(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct TopLevel {
        rows: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<TopLevel>(text).is_ok_and(|t| t.rows.is_some())
}

/// Reads a JSON rows document (`{"rows": [...], "design": {...}}`,
/// docs/analyze-few.md); an error names the file, line, column and field
/// (`rows[3].value`).
pub fn read_rows_document(text: &str, file: &str) -> Result<commonlab_stats::rows::RowsInput> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        // serde_json ends its messages with the position, given in front here.
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        anyhow!("{file}:{line}:{column}: {path}: {message}")
    })
}

/// Reads the events of a file as (line, JSON value) pairs.
pub fn read_events(path: &Path, text: &str) -> Result<Vec<(usize, serde_json::Value)>> {
    let name = path.display();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .with_context(|| format!("{name}: cannot read the header line"))?
                .clone();
            let mut out = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let line = i + 2;
                let record =
                    record.with_context(|| format!("{name}:{line}: not a valid CSV record"))?;
                let mut obj = serde_json::Map::new();
                for (h, v) in headers.iter().zip(record.iter()) {
                    if v.is_empty() {
                        continue;
                    }
                    let value = if h == "properties" {
                        serde_json::from_str(v).map_err(|e| {
                            anyhow!("{name}:{line}: column 'properties': not a JSON object ({e})")
                        })?
                    } else {
                        serde_json::Value::String(v.to_string())
                    };
                    obj.insert(h.to_string(), value);
                }
                out.push((line, serde_json::Value::Object(obj)));
            }
            Ok(out)
        }
        "json" => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| anyhow!("{name}:{}:{}: not JSON: {e}", e.line(), e.column()))?;
            match v {
                serde_json::Value::Array(items) => Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1, v))
                    .collect()),
                _ => bail!("{name}: expected a JSON array of events"),
            }
        }
        _ => {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v = serde_json::from_str(line)
                    .map_err(|e| anyhow!("{name}:{}: not JSON: {e}", i + 1))?;
                out.push((i + 1, v));
            }
            Ok(out)
        }
    }
}
