//! Walk the cached paths and stream them as tar → zstd into any writer, hashing the
//! compressed bytes as they pass so the digest is ready the moment the upload ends.
//!
//! Entry names are `<index>/<path inside the cached path>`, where `<index>` is the position
//! of the path in the manifest's list: the archive never names a location on the machine,
//! so restoring can only ever write under the declared paths.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::entry::{CHUNK_DIGEST_BYTES, ChunkDigests};
use crate::paths::CachePath;
use crate::progress::Progress;

#[derive(Debug, Clone, Default)]
pub struct PackStats {
    pub files: u64,
    /// Bytes of file content before compression.
    pub bytes: u64,
    pub archive_bytes: u64,
    pub digest: String,
    /// The blake3 of each `chunk`-byte piece, as `pack` was asked; `None` for an archive
    /// of one piece (it is fetched whole).
    pub chunks: Option<crate::entry::ChunkDigests>,
    /// Things skipped (sockets, FIFOs, devices), for the log.
    pub skipped: Vec<String>,
    /// Credential files that went into the archive, for a warning.
    pub credentials: Vec<crate::secrets::Finding>,
    /// Links that leave their cached tree and resolved, for the manifest: a restore checks
    /// they resolve there too.
    pub links: Vec<crate::fit::OutsideLink>,
}

/// Counts and hashes what passes through to the inner writer.
pub struct HashWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    count: u64,
    /// The inner writer (the upload) failed: the error is the store's, not the tree's.
    broke: bool,
    /// Bytes per piece digest, the hasher of the piece being written, and those done.
    chunk: u64,
    piece: blake3::Hasher,
    sums: Vec<[u8; CHUNK_DIGEST_BYTES]>,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W, chunk: u64) -> Self {
        HashWriter {
            inner,
            hasher: blake3::Hasher::new(),
            count: 0,
            broke: false,
            chunk: chunk.max(1),
            piece: blake3::Hasher::new(),
            sums: Vec::new(),
        }
    }

    fn end_piece(&mut self) {
        let sum = self.piece.finalize();
        self.sums.push(
            sum.as_bytes()[..CHUNK_DIGEST_BYTES]
                .try_into()
                .expect("blake3 is 32 bytes"),
        );
        self.piece.reset();
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.broke = true)?;
        self.hasher.update(&buf[..n]);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let room = (self.chunk - self.count % self.chunk) as usize;
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.piece.update(now);
            self.count += now.len() as u64;
            if self.count % self.chunk == 0 {
                self.end_piece();
            }
            rest = later;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.broke = true)
    }
}

/// `chunk` is the store's `--chunk-size`: the archive gets a digest per piece of that size,
/// the ranges a parallel download fetches.
pub fn pack<W: Write>(
    paths: &[CachePath],
    out: W,
    level: i32,
    chunk: u64,
) -> Result<(W, PackStats)> {
    let hashed = HashWriter::new(out, chunk);
    let buffered = io::BufWriter::with_capacity(1 << 20, hashed);
    let mut encoder = zstd::stream::write::Encoder::new(buffered, level)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    if workers > 1 {
        encoder.multithread(workers)?;
        // zstd's default job at the usual levels is 8 MiB, and it keeps about four jobs of
        // input and output per worker pair in memory (some 60 MB); 4 MiB jobs halve that
        // for about 0.5 % more bytes. High levels are chosen for their ratio: left alone.
        if level < 10 {
            encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(4 << 20))?;
        }
    }
    encoder.include_checksum(true)?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let mut stats = PackStats::default();
    let progress = Progress::save(paths.iter().map(|p| p.abs.clone()).collect());

    for (i, p) in paths.iter().enumerate() {
        if let Err(e) = add_tree(&mut builder, p, i, &mut stats, &progress) {
            // A write into the upload fails inside the walk too: say which side broke.
            let upload_broke = builder.get_ref().get_ref().get_ref().broke;
            return Err(if upload_broke {
                e.context(format!("upload failed while archiving {}", p.abs.display()))
            } else {
                e.context(format!("cannot archive {}", p.abs.display()))
            });
        }
    }

    // What is left is writing out: the upload's failures.
    let encoder = builder.into_inner().context("upload failed")?;
    let buffered = encoder.finish().context("upload failed")?;
    let mut hashed = buffered
        .into_inner()
        .map_err(|e| anyhow::anyhow!("upload failed: {}", e.error()))?;
    if hashed.count % hashed.chunk != 0 {
        hashed.end_piece();
    }
    if hashed.sums.len() > 1 {
        stats.chunks = Some(ChunkDigests::new(hashed.chunk, &hashed.sums));
    }
    stats.archive_bytes = hashed.count;
    stats.digest = hashed.hasher.finalize().to_hex().to_string();
    Ok((hashed.inner, stats))
}

fn add_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &CachePath,
    index: usize,
    stats: &mut PackStats,
    progress: &Progress,
) -> Result<()> {
    let root = path.abs.as_path();
    let prefix = index.to_string();
    for entry in crate::paths::walk_sorted(root) {
        let entry = entry?;
        if entry.depth() > 0
            && !entry.file_type().is_dir()
            && path.skip.is_match(&entry.file_name().to_string_lossy())
        {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walk stays under root");
        // A Path, not a String: non-UTF-8 names survive, tar stores bytes.
        let name = Path::new(&prefix).join(rel);
        // A restore rejects such names (they confuse other tar readers and log lines), so
        // an archive holding one could never be used: better not to save it at all.
        if name
            .as_os_str()
            .as_bytes()
            .iter()
            .any(|&b| b == b'\n' || b == b'\r')
        {
            anyhow::bail!(
                "{:?} has a line break in its name, which cachegate does not cache",
                entry.path()
            );
        }
        let meta = entry.metadata()?;
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if ft.is_dir() {
            header.set_size(0);
            builder.append_data(&mut header, &name, io::empty())?;
        } else if ft.is_file() {
            // Bounded by the size in the header: a file growing under us must not
            // desynchronise the archive.
            let opened = File::open(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let file = progress.reader(opened.take(meta.len()));
            stats.files += 1;
            stats.bytes += meta.len();
            stats
                .credentials
                .extend(crate::secrets::check(entry.path()));
            builder.append_data(&mut header, &name, file)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            crate::fit::note_link(&mut stats.links, index, root, rel, &target);
            header.set_size(0);
            builder.append_link(&mut header, &name, &target)?;
            stats.files += 1;
        } else {
            stats.skipped.push(entry.path().display().to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_digests_cover_each_chunk_whatever_the_write_sizes() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut w = HashWriter::new(Vec::new(), 64);
        for part in data.chunks(37) {
            w.write_all(part).unwrap();
        }
        w.end_piece();
        let want: Vec<[u8; CHUNK_DIGEST_BYTES]> = data
            .chunks(64)
            .map(|c| {
                blake3::hash(c).as_bytes()[..CHUNK_DIGEST_BYTES]
                    .try_into()
                    .unwrap()
            })
            .collect();
        assert_eq!(w.sums, want);
        let c = ChunkDigests::new(64, &w.sums);
        assert_eq!(c.decode(1000), Some(want));
        // Another size, another count: not these digests.
        assert_eq!(c.decode(2000), None);
    }
}
