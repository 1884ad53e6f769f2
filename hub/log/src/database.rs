//! The redb database behind the log, and opening it again in place.
//!
//! After an I/O error in a commit (a full disk, most often) redb refuses
//! every later transaction ("Previous I/O error occurred") until the
//! database is closed and opened again. The writer does that itself
//! (`Writer::reopen`), so a disk that fills up and is freed again does not
//! need a hub restart: readers get [`LogError::Reopening`] for the few
//! milliseconds it takes, and the file is checked as after a crash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use crate::backend::ZeroFilledFile;
use crate::{LogError, Result};

/// The database, shared by the writer and the readers; empty while the
/// writer opens it again.
pub(crate) struct DbSlot {
    path: PathBuf,
    cache_bytes: usize,
    db: RwLock<Option<Arc<Database>>>,
}

impl DbSlot {
    /// Opens (or creates) the database at `path`.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<DbSlot> {
        let db = open(path, cache_bytes)?;
        Ok(DbSlot { path: path.to_path_buf(), cache_bytes, db: RwLock::new(Some(Arc::new(db))) })
    }

    /// The database now, or [`LogError::Reopening`].
    pub(crate) fn get(&self) -> Result<Arc<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(LogError::Reopening)
    }

    /// Closes the database and opens it again. Readers may still hold the
    /// old handle (a read in progress): opening is retried until they are
    /// done, for up to 30 s.
    pub(crate) fn reopen(&self, writers_handle: Option<Arc<Database>>) -> Result<Arc<Database>> {
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(old);
        drop(writers_handle);
        let deadline = Instant::now() + Duration::from_secs(30);
        let db = loop {
            match open(&self.path, self.cache_bytes) {
                Ok(db) => break Arc::new(db),
                Err(LogError::AlreadyOpen(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => return Err(err),
            }
        };
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        Ok(db)
    }
}

fn open(path: &Path, cache_bytes: usize) -> Result<Database> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LogError::storage(redb::DatabaseError::from(e)))?;
    let backend = ZeroFilledFile::new(file).map_err(LogError::storage)?;
    Database::builder()
        .set_cache_size(cache_bytes)
        .set_repair_callback(crate::log_repair_progress())
        .create_with_backend(backend)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LogError::AlreadyOpen(path.display().to_string()),
            other => LogError::storage(other),
        })
}
