//! A byte-level tar writer for the hostile-archive corpus: it writes exactly the headers it
//! is told to, including the ones the `tar` crate refuses to build (`..` names, absolute
//! paths, NULs, bad PAX records, size fields that lie), and compresses them the way
//! cachegate's archives are compressed.

/// Entry types, as the one-byte typeflag.
pub const FILE: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR_DEVICE: u8 = b'3';
pub const BLOCK_DEVICE: u8 = b'4';
pub const DIR: u8 = b'5';
pub const FIFO: u8 = b'6';
pub const PAX: u8 = b'x';
pub const PAX_GLOBAL: u8 = b'g';
pub const GNU_LONGNAME: u8 = b'L';
pub const GNU_SPARSE: u8 = b'S';
pub const GNU_VOLUME: u8 = b'V';

/// One header, with every field that matters settable; `size` is what the header claims,
/// independent of the data that follows.
#[derive(Clone)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub mode: u32,
    pub size: u64,
    pub link: &'a [u8],
    pub mtime: u64,
    /// The mtime field as raw bytes (GNU base-256 numbers, garbage), instead of `mtime`.
    pub raw_mtime: Option<[u8; 12]>,
}

impl<'a> Header<'a> {
    pub fn new(name: &'a [u8], kind: u8) -> Self {
        Header {
            name,
            kind,
            mode: if kind == DIR { 0o755 } else { 0o644 },
            size: 0,
            link: b"",
            mtime: 1_000_000_000,
            raw_mtime: None,
        }
    }

    fn bytes(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        octal(&mut h[100..108], self.mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], self.size);
        match self.raw_mtime {
            Some(raw) => h[136..148].copy_from_slice(&raw),
            None => octal(&mut h[136..148], self.mtime),
        }
        h[156] = self.kind;
        let l = self.link.len().min(100);
        h[157..157 + l].copy_from_slice(&self.link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A header followed by `data`, padded to a block.
    pub fn entry(&mut self, h: &Header, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&h.bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(&Header::new(name.as_bytes(), DIR), b"")
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_mode(name, data, 0o644)
    }

    pub fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = Header::new(name.as_bytes(), FILE);
        h.size = data.len() as u64;
        h.mode = mode;
        self.entry(&h, data)
    }

    pub fn link(&mut self, kind: u8, name: &str, target: &str) -> &mut Self {
        let mut h = Header::new(name.as_bytes(), kind);
        h.link = target.as_bytes();
        self.entry(&h, b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(SYMLINK, name, target)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(HARDLINK, name, target)
    }

    /// A PAX extended header (`x`, or `g` for global) with well-formed records.
    pub fn pax(&mut self, kind: u8, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            body.extend_from_slice(&pax_record(k, v));
        }
        self.pax_raw(kind, &body)
    }

    /// A PAX header with exactly this body, well-formed or not.
    pub fn pax_raw(&mut self, kind: u8, body: &[u8]) -> &mut Self {
        let mut h = Header::new(b"././@PaxHeader", kind);
        h.size = body.len() as u64;
        self.entry(&h, body)
    }

    /// A GNU long name (`L`) or long link (`K`) for the next entry.
    pub fn gnu_long(&mut self, kind: u8, value: &[u8]) -> &mut Self {
        let mut data = value.to_vec();
        data.push(0);
        let mut h = Header::new(b"././@LongLink", kind);
        h.size = data.len() as u64;
        self.entry(&h, &data)
    }

    fn pad(&mut self) {
        let rem = self.buf.len() % 512;
        if rem != 0 {
            self.buf.resize(self.buf.len() + 512 - rem, 0);
        }
    }

    /// The archive with its end-of-archive blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.resize(out.len() + 1024, 0);
        out
    }
}

/// `"<len> <key>=<value>\n"`, where len counts the whole record including itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// zstd, as cachegate compresses archives.
pub fn zst(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}
