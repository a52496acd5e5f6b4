//! JSONL and CSV output files, written to a temporary file beside the target and renamed
//! into place, so that readers never see half a result and a failed run leaves the
//! previous output untouched.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::BatchError;
use crate::row::{Row, COLUMNS};

/// The encoding of an output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// Writes rows to a file, atomically on [`finish`](RowFile::finish).
pub struct RowFile {
    kind: FileKind,
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    buf: String,
    rows: u64,
}

impl RowFile {
    /// Starts writing `path` (through `path.tmp-<pid>`).
    pub fn create(path: &Path, kind: FileKind) -> Result<Self, BatchError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp).map_err(|e| BatchError::io("cannot create", path, e))?;
        let mut out = RowFile {
            kind,
            path: path.to_owned(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            buf: String::with_capacity(1 << 16),
            rows: 0,
        };
        if kind == FileKind::Csv {
            out.buf.push_str(&COLUMNS.join(","));
            out.buf.push('\n');
        }
        Ok(out)
    }

    /// Appends one row.
    pub fn write(&mut self, row: &Row<'_>) -> Result<(), BatchError> {
        match self.kind {
            FileKind::Jsonl => row.push_json(&mut self.buf),
            FileKind::Csv => row.push_csv(&mut self.buf),
        }
        self.rows += 1;
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), BatchError> {
        if let Some(out) = &mut self.out {
            out.write_all(self.buf.as_bytes())
                .map_err(|e| BatchError::io("cannot write", &self.path, e))?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Flushes and moves the file into place; returns the rows written.
    pub fn finish(mut self) -> Result<u64, BatchError> {
        self.flush_buf()?;
        let Some(out) = self.out.take() else {
            return Ok(self.rows);
        };
        let file = out
            .into_inner()
            .map_err(|e| BatchError::io("cannot write", &self.path, e.into_error()))?;
        file.sync_data()
            .map_err(|e| BatchError::io("cannot write", &self.path, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| BatchError::io("cannot write", &self.path, e))?;
        Ok(self.rows)
    }
}

impl Drop for RowFile {
    fn drop(&mut self) {
        // After `finish` the temporary file no longer exists; otherwise remove the partial one.
        let _ = std::fs::remove_file(&self.tmp);
    }
}
