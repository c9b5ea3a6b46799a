//! Key material: JWT public keys from configuration, the development key pair, the cursor secret.

use crate::config::{AppEnv, Config};
use anyhow::{Context, bail};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::fs;
use std::path::{Path, PathBuf};
use vrs_adapter_http::AuthConfig;
use vrs_domain::UserId;

/// `kid` of the development key.
pub const DEV_KID: &str = "dev";

fn dev_private_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-jwt-private.pem")
}

fn dev_public_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-jwt-public.pem")
}

/// Writes a file readable by the owner only, atomically (a concurrent reader never sees half of it).
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The development RSA-2048 key pair (private PEM, public PEM), created on first use.
pub fn ensure_dev_keys(data_dir: &Path) -> anyhow::Result<(String, String)> {
    let (private, public) = (dev_private_path(data_dir), dev_public_path(data_dir));
    if private.exists() && public.exists() {
        return Ok((fs::read_to_string(&private)?, fs::read_to_string(&public)?));
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
    let private_der = AsDer::<Pkcs8V1Der>::as_der(&pair)
        .map_err(|_| anyhow::anyhow!("encoding the private key failed"))?;
    let public_der = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
        .map_err(|_| anyhow::anyhow!("encoding the public key failed"))?;
    let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private_der.as_ref().to_vec()));
    let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
    write_private(&private, private_pem.as_bytes())?;
    write_private(&public, public_pem.as_bytes())?;
    tracing::info!(dir = %data_dir.display(), "created a development JWT key pair");
    Ok((private_pem, public_pem))
}

/// The public keys that verify access tokens.
pub fn auth_config(config: &Config) -> anyhow::Result<AuthConfig> {
    let jwt = &config.jwt;
    let mut pems: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    if let Some(pem) = &jwt.public_key {
        pems.push((jwt.key_id.clone(), pem.replace("\\n", "\n").into_bytes()));
    }
    if let Some(path) = &jwt.public_key_file {
        let pem = fs::read(path)
            .with_context(|| format!("JWT_PUBLIC_KEY_FILE: reading {}", path.display()))?;
        pems.push((jwt.key_id.clone(), pem));
    }
    if let Some(dir) = &jwt.public_keys_dir {
        let entries = fs::read_dir(dir)
            .with_context(|| format!("JWT_PUBLIC_KEYS_DIR: reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pem") {
                let kid = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                pems.push((kid, fs::read(&path)?));
            }
        }
    }
    if pems.is_empty() {
        if config.app_env == AppEnv::Production {
            bail!("JWT_PUBLIC_KEY: APP_ENV=production needs a public key");
        }
        let (_, public) = ensure_dev_keys(&config.data_dir)?;
        pems.push((Some(DEV_KID.to_owned()), public.into_bytes()));
    }
    AuthConfig::from_pems(
        pems.iter().map(|(kid, pem)| (kid.clone(), pem.as_slice())),
        jwt.issuer.clone(),
        jwt.audience.clone(),
    )
    .map_err(|e| anyhow::anyhow!("JWT keys: {e}"))
}

/// Signs a development access token with the development key.
pub fn dev_token(
    config: &Config,
    user: UserId,
    admin: bool,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    if config.app_env == AppEnv::Production {
        bail!("dev-token is not available with APP_ENV=production");
    }
    if config.jwt.has_keys() {
        bail!(
            "dev-token signs with the development key, but JWT public keys are configured; unset JWT_PUBLIC_KEY* to use it"
        );
    }
    let (private, _) = ensure_dev_keys(&config.data_dir)?;
    let key =
        EncodingKey::from_rsa_pem(private.as_bytes()).context("loading the development key")?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "sub": user.to_string(),
        "iat": now,
        "nbf": now,
        "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        "token_type": "access",
    });
    if admin {
        claims["role"] = "admin".into();
    }
    if let Some(iss) = &config.jwt.issuer {
        claims["iss"] = iss.clone().into();
    }
    if let Some(aud) = &config.jwt.audience {
        claims["aud"] = aud.clone().into();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(DEV_KID.to_owned());
    jsonwebtoken::encode(&header, &claims, &key).context("signing the token")
}

/// The key that signs page cursors: `CURSOR_SECRET`, or outside production a random secret kept in
/// the data directory (so cursors survive restarts).
pub fn cursor_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.cursor_secret {
        return Ok(secret.clone().into_bytes());
    }
    if config.app_env == AppEnv::Production {
        bail!("CURSOR_SECRET: APP_ENV=production needs a secret");
    }
    let path = config.data_dir.join("cursor-secret");
    if let Ok(existing) = fs::read(&path)
        && existing.len() >= 32
    {
        return Ok(existing);
    }
    fs::create_dir_all(&config.data_dir)?;
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret)
        .map_err(|_| anyhow::anyhow!("no randomness for the cursor secret"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, hex.as_bytes())?;
    Ok(hex.into_bytes())
}
