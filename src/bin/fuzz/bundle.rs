//! A fuzz case: a few named files (a model folder is config.json + weights, a data set is two
//! CSV files), and how a case travels over the supervisor -> worker pipe.

use std::io::{self, Read, Write};
use std::path::Path;

/// The files of one case, written into a scratch folder before the target loads it.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub files: Vec<(String, Vec<u8>)>,
}

impl Bundle {
    /// A bundle of one file.
    pub fn single(name: &str, bytes: Vec<u8>) -> Bundle {
        Bundle {
            files: vec![(name.to_string(), bytes)],
        }
    }

    /// Writes every file into `dir` (emptied first, so no file of an earlier case stays); also how
    /// a finding is saved for `--replay`.
    pub fn write_into(&self, dir: &Path) -> io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        for (name, bytes) in &self.files {
            std::fs::write(dir.join(name), bytes)?;
        }
        Ok(())
    }

    /// Wire format: file count, then per file name length, name, data length, data (u32 LE).
    pub fn send(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&(self.files.len() as u32).to_le_bytes())?;
        for (name, bytes) in &self.files {
            out.write_all(&(name.len() as u32).to_le_bytes())?;
            out.write_all(name.as_bytes())?;
            out.write_all(&(bytes.len() as u32).to_le_bytes())?;
            out.write_all(bytes)?;
        }
        out.flush()
    }

    /// Reads one bundle in the wire format; `None` at end of input.
    pub fn receive(input: &mut impl Read) -> io::Result<Option<Bundle>> {
        let mut word = [0u8; 4];
        match input.read_exact(&mut word) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let count = u32::from_le_bytes(word) as usize;
        let mut files = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = String::from_utf8_lossy(&read_chunk(input)?).into_owned();
            files.push((name, read_chunk(input)?));
        }
        Ok(Some(Bundle { files }))
    }

    /// Reads a saved case back: every file of `dir`, in name order.
    pub fn load(dir: &Path) -> io::Result<Bundle> {
        let mut names: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let files = names
            .into_iter()
            .map(|n| std::fs::read(dir.join(&n)).map(|b| (n, b)))
            .collect::<io::Result<_>>()?;
        Ok(Bundle { files })
    }
}

fn read_chunk(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut word = [0u8; 4];
    input.read_exact(&mut word)?;
    let mut data = vec![0u8; u32::from_le_bytes(word) as usize];
    input.read_exact(&mut data)?;
    Ok(data)
}
