//! Kernel configuration, read from /proc/config.gz (CONFIG_IKCONFIG_PROC).

use anyhow::{Context, Result};
use flate2::read::GzDecoder;
use std::collections::HashMap;
use std::io::Read;

#[derive(Debug, Default)]
pub struct KConfig {
    map: HashMap<String, String>,
}

impl KConfig {
    pub fn load() -> Result<Self> {
        let raw = std::fs::read("/proc/config.gz")
            .context("reading /proc/config.gz (needs CONFIG_IKCONFIG_PROC)")?;
        let mut text = String::new();
        GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .context("decompressing /proc/config.gz")?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut map = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    map.insert(name.to_string(), "n".to_string());
                }
            } else if let Some((k, v)) = line.split_once('=') {
                if k.starts_with("CONFIG_") {
                    map.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        KConfig { map }
    }

    /// Check a requirement written as `CONFIG_FOO` (=y or =m), `CONFIG_FOO=y`
    /// or `CONFIG_FOO=value`.
    pub fn satisfies(&self, req: &str) -> bool {
        match req.split_once('=') {
            Some((k, v)) => self.map.get(k).map(String::as_str) == Some(v),
            None => matches!(self.map.get(req).map(String::as_str), Some("y" | "m")),
        }
    }

    /// The requirements that are not met.
    pub fn missing<'a>(&self, reqs: &[&'a str]) -> Vec<&'a str> {
        reqs.iter()
            .copied()
            .filter(|r| !self.satisfies(r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        let c = KConfig::parse(
            "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x\"\nCONFIG_E=4\n",
        );
        let cases = [
            ("CONFIG_A", true),
            ("CONFIG_B", true),
            ("CONFIG_B=y", false),
            ("CONFIG_C", false),
            ("CONFIG_D=x", true),
            ("CONFIG_E=4", true),
            ("CONFIG_E", false),
            ("CONFIG_MISSING", false),
        ];
        for (req, want) in cases {
            assert_eq!(c.satisfies(req), want, "{req}");
        }
        assert_eq!(c.missing(&["CONFIG_A", "CONFIG_C"]), vec!["CONFIG_C"]);
    }
}
