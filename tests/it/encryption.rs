//! Encrypted repositories (format 2, issue #12) at the library level: a round trip, a wrong
//! password that writes nothing, a flipped byte in each kind of object reported as an
//! authentication failure, key management, and a canary that must not be readable in any
//! repository file (and is, in an unencrypted repository, so the scan can fail).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airback::airtable::{Client, ClientOptions, Token};
use airback::backend::{Backend, BackendOptions};
use airback::backup::{BackupOptions, backup_base};
use airback::check::{CheckOptions, check};
use airback::crypto::{KdfParams, KeyMeta, Password};
use airback::progress::NoProgress;
use airback::repo::{CacheChoice, InitEncryption, InitOptions, RepoError, Repository};
use airback::stored::StoredBase;
use airback_fake::{FakeAirtable, FakeOptions, Preset};
use futures::StreamExt;

use crate::support::contents;

fn password(s: &str) -> Password {
    Password::new(s.as_bytes().into())
}

fn meta(host: &str) -> KeyMeta {
    KeyMeta {
        hostname: host.into(),
        username: "tester".into(),
        created: "2026-11-22T15:00:00Z".into(),
    }
}

fn backend(location: &Path) -> Backend {
    Backend::open(
        location.to_str().unwrap(),
        &BackendOptions {
            create: true,
            ..BackendOptions::default()
        },
    )
    .unwrap()
}

/// Options for a new repository: encrypted with `pw` (cheap KDF), or not.
fn init_options(pw: Option<&str>) -> InitOptions {
    InitOptions {
        encryption: match pw {
            Some(pw) => InitEncryption::Password {
                password: Arc::new(password(pw)),
                kdf: KdfParams::FOR_TESTS,
                meta: meta("host-1"),
            },
            None => InitEncryption::None,
        },
        ..InitOptions::default()
    }
}

async fn open(location: &Path, pw: Option<&str>) -> Result<Repository, RepoError> {
    let pw = pw.map(password);
    Repository::open(backend(location), CacheChoice::Memory, pw.as_ref()).await
}

/// A fake Airtable and a client for it.
struct Fake {
    fake: FakeAirtable,
    client: Client,
    base: String,
}

async fn fake(options: FakeOptions) -> Fake {
    let fake = FakeAirtable::start(options).await.unwrap();
    let mut client_options = ClientOptions::default().with_url(&fake.url());
    client_options.retry_base_delay = std::time::Duration::from_millis(20);
    let client = Client::new(Token::new(fake.token()).unwrap(), client_options).unwrap();
    let base = fake.bases()[0].id.clone();
    Fake { fake, client, base }
}

/// Creates a repository at `location` (encrypted with `pw`, or not) and snapshots the fake's
/// first base into it.
async fn repo_with_snapshot(f: &Fake, location: &Path, pw: Option<&str>) -> Repository {
    Repository::init(&backend(location), &init_options(pw))
        .await
        .unwrap();
    let repo = open(location, pw).await.unwrap();
    backup_base(
        &repo,
        &f.client,
        &BackupOptions::new(&f.base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_repository_round_trips_and_checks_clean() {
    let f = fake(FakeOptions::unlimited(Preset::Demo)).await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let repo = repo_with_snapshot(&f, &location, Some("pw-right")).await;
    assert!(repo.is_encrypted());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(location.join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], 2);
    assert!(config["chunker"].get("seed").is_none());
    assert_eq!(std::fs::read_dir(location.join("keys")).unwrap().count(), 1);

    // Read back through a fresh open: every record and every attachment's bytes.
    let repo = open(&location, Some("pw-right")).await.unwrap();
    let snapshots = airback::list_snapshots(&repo).await.unwrap();
    assert_eq!(snapshots.len(), 1);
    let (id, snapshot) = snapshots.into_iter().next().unwrap();
    let stored = StoredBase::open(&repo, id, snapshot).await.unwrap();
    let mut attachments = 0;
    for table in &stored.tables {
        let mut records = stored.records(table);
        let mut count = 0;
        while let Some(record) = records.next().await {
            let record = record.unwrap();
            count += 1;
            for cell in record.fields.values() {
                for item in cell.as_array().into_iter().flatten() {
                    if let Some(att) = item.get("id").and_then(|v| v.as_str())
                        && att.starts_with("att")
                    {
                        let file = stored.attachment(att).await.unwrap().unwrap();
                        let bytes = stored.read_file(&file).await.unwrap();
                        assert_eq!(Some(bytes), f.fake.attachment_content(att), "{att}");
                        attachments += 1;
                    }
                }
            }
        }
        assert_eq!(
            Some(count),
            f.fake.record_count(&f.base, &table.id),
            "{}",
            table.name
        );
    }
    assert!(attachments > 0);

    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..CheckOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(report.encrypted);
    assert!(report.packs_read > 0);
    assert!(report.warnings.iter().all(|w| !w.contains("not encrypted")));

    // A second snapshot of the unchanged base stores (almost) nothing new: dedup works with
    // keyed ids.
    let summary = backup_base(
        &repo,
        &f.client,
        &BackupOptions::new(&f.base),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(summary.objects_written, 1, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_repository_is_reported_as_such() {
    let f = fake(FakeOptions::unlimited(Preset::Demo)).await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let repo = repo_with_snapshot(&f, &location, None).await;
    assert!(!repo.is_encrypted());
    let report = check(&repo, &CheckOptions::default()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(!report.encrypted);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("not encrypted (format version 1)"))
    );
    assert!(matches!(
        repo.list_keys().await,
        Err(RepoError::NotEncrypted)
    ));
    // A v1 repository ignores a password.
    open(&location, Some("anything")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_password_writes_nothing() {
    let f = fake(FakeOptions::unlimited(Preset::Demo)).await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    repo_with_snapshot(&f, &location, Some("pw-right")).await;
    let before = contents(&location);
    let cache = dir.path().join("cache");

    let wrong = password("pw-wrong");
    let err = Repository::open(
        backend(&location),
        CacheChoice::Dir(cache.clone()),
        Some(&wrong),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RepoError::WrongPassword { key_files: 1, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("opens none of the 1 key files"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(!text.contains("pw-wrong"));

    let err = Repository::open(backend(&location), CacheChoice::Dir(cache.clone()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::PasswordRequired { .. }), "{err:?}");

    assert_eq!(contents(&location), before, "the repository changed");
    assert!(!cache.exists(), "a cache was created");

    // A config replaced by a format-1 one is refused, not used.
    let mut config: serde_json::Value =
        serde_json::from_slice(&before[Path::new("config")]).unwrap();
    config["version"] = 1.into();
    config["encryption"] = serde_json::Value::Null;
    config["chunker"]["seed"] = 1.into();
    std::fs::write(
        location.join("config"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let err = open(&location, None).await.unwrap_err();
    assert!(matches!(err, RepoError::Downgrade { .. }), "{err:?}");
    // An edited v2 config (another pack size) no longer matches the key files.
    let mut config: serde_json::Value =
        serde_json::from_slice(&before[Path::new("config")]).unwrap();
    config["pack_size"] = (8 * 1024 * 1024).into();
    std::fs::write(
        location.join("config"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let err = open(&location, Some("pw-right")).await.unwrap_err();
    assert!(matches!(err, RepoError::ConfigMismatch { .. }), "{err:?}");
    // `init` refuses a location with key files even without a config.
    std::fs::remove_file(location.join("config")).unwrap();
    let err = Repository::init(&backend(&location), &init_options(Some("x")))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::AlreadyExists { .. }), "{err:?}");
}

/// Copies the repository folder `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    for path in crate::support::files_below(from) {
        let target = to.join(&path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&path), target).unwrap();
    }
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn only_file(dir: &Path) -> PathBuf {
    let mut files = crate::support::files_below(dir);
    files.sort();
    dir.join(&files[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_any_object_is_an_authentication_failure() {
    // Enough table data for a zstd dictionary, and attachments for data packs.
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=1,records=3000,attachments=10,min=2000,max=20000"
        .parse()
        .unwrap();
    let f = fake(options).await;
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let repo = repo_with_snapshot(&f, &original, Some("pw-1")).await;
    let key2 = repo
        .add_key(&password("pw-2"), KdfParams::FOR_TESTS, &meta("host-2"))
        .await
        .unwrap();
    let key1 = repo.current_key().unwrap();
    assert_ne!(key1, key2);
    assert_eq!(
        crate::support::files_below(&original.join("dicts")).len(),
        1,
        "the test needs a dictionary"
    );

    // Where things are, found through the library.
    let index_id = repo.list_index_files().await.unwrap()[0];
    let index = repo.load_index_file(&index_id).await.unwrap();
    let data_pack = index
        .packs
        .iter()
        .find(|p| p.kind == airback::repo::BlobKind::Data && !p.blobs.is_empty())
        .expect("a data pack")
        .clone();
    let blob0 = data_pack.blobs[0];
    let pack_rel = airback::internals::pack_path(&data_pack.id);
    let snapshot_id = repo.list_snapshots().await.unwrap()[0];

    type OffsetOf = Box<dyn Fn(&[u8]) -> usize>;
    struct Case {
        name: &'static str,
        /// The damaged file, relative to the repository.
        file: PathBuf,
        offset: OffsetOf,
        /// What the error must name.
        names: Vec<String>,
    }
    let pack_len = std::fs::metadata(original.join(&pack_rel)).unwrap().len() as usize;
    let header_len = {
        let bytes = std::fs::read(original.join(&pack_rel)).unwrap();
        u32::from_le_bytes(bytes[pack_len - 8..pack_len - 4].try_into().unwrap()) as usize
    };
    let key1_file = format!("keys/{key1}");
    let dict_file = only_file(&original.join("dicts"));
    let dict_name = dict_file.file_name().unwrap().to_str().unwrap().to_string();
    let cases = [
        Case {
            name: "data pack blob",
            file: pack_rel.clone().into(),
            offset: Box::new(move |_| (blob0.offset + blob0.length / 2) as usize),
            names: vec![
                format!("pack {}", data_pack.id),
                format!("blob {}", blob0.id),
            ],
        },
        Case {
            name: "pack header",
            file: pack_rel.clone().into(),
            offset: Box::new(move |_| pack_len - 24 - header_len / 2),
            names: vec![format!("pack {}", data_pack.id), "header".into()],
        },
        Case {
            name: "index file",
            file: format!("index/{index_id}").into(),
            offset: Box::new(|b| b.len() / 2),
            names: vec![format!("index file {index_id}")],
        },
        Case {
            name: "snapshot",
            file: format!("snapshots/{snapshot_id}").into(),
            offset: Box::new(|b| b.len() / 2),
            names: vec![format!("snapshot {snapshot_id}")],
        },
        Case {
            name: "dictionary",
            file: format!("dicts/{dict_name}").into(),
            offset: Box::new(|b| b.len() / 2),
            names: vec![format!("dictionary `dicts/{dict_name}`")],
        },
        Case {
            name: "key file",
            file: key1_file.clone().into(),
            // A letter of the host name: still valid JSON, so the MAC decides.
            offset: Box::new(|b| {
                let text = std::str::from_utf8(b).unwrap();
                text.find("\"host-1\"").unwrap() + 2
            }),
            names: vec![format!("key file {key1}")],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let copy = dir.path().join(format!("case-{i}"));
        copy_dir(&original, &copy);
        let path = copy.join(&case.file);
        let offset = (case.offset)(&std::fs::read(&path).unwrap());
        flip(&path, offset);
        // Opened with the second password, so the first key file can be the damaged one.
        let repo = open(&copy, Some("pw-2")).await.unwrap();
        let report = check(
            &repo,
            &CheckOptions {
                read_data: true,
                ..CheckOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(!report.is_ok(), "{}: no error", case.name);
        let hit = report.errors.iter().find(|e| {
            e.contains("authentication failed") && case.names.iter().all(|n| e.contains(n))
        });
        assert!(
            hit.is_some(),
            "{}: no error names {:?} with \"authentication failed\": {:#?}",
            case.name,
            case.names,
            report.errors
        );
        println!("{}: {}", case.name, hit.unwrap());
        if case.name == "data pack blob" {
            // A normal read of the damaged blob fails; it never returns bytes.
            let repo = open(&copy, Some("pw-2")).await.unwrap();
            let err = repo.read_blob(&blob0.id).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, RepoError::Corrupt { .. }), "{err:?}");
            assert!(text.contains("authentication failed"), "{text}");
            assert!(text.contains(&data_pack.id.to_hex()), "{text}");
            assert!(text.contains(&blob0.id.to_hex()), "{text}");
        }
    }

    // The only key file damaged: `NoUsableKey`, not a wrong password.
    let copy = dir.path().join("only-key");
    copy_dir(&original, &copy);
    std::fs::remove_file(copy.join(format!("keys/{key2}"))).unwrap();
    flip(&copy.join(&key1_file), 10);
    let err = open(&copy, Some("pw-1")).await.unwrap_err();
    assert!(matches!(err, RepoError::NoUsableKey { .. }), "{err:?}");
    // No key file at all.
    std::fs::remove_file(copy.join(&key1_file)).unwrap();
    let err = open(&copy, Some("pw-1")).await.unwrap_err();
    assert!(matches!(err, RepoError::NoKeys { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_be_added_removed_and_changed() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let (_, first) = Repository::init(&backend(&location), &init_options(Some("pw-1")))
        .await
        .unwrap();
    let first = first.expect("an encrypted repository has a first key");
    let repo = open(&location, Some("pw-1")).await.unwrap();
    assert_eq!(repo.current_key(), Some(first));
    let second = repo
        .add_key(&password("pw-2"), KdfParams::FOR_TESTS, &meta("host-2"))
        .await
        .unwrap();
    let keys = repo.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let listed_first = keys.iter().find(|k| k.id == first).unwrap();
    assert!(listed_first.current);
    assert_eq!(listed_first.hostname, "host-1");
    let listed_second = keys.iter().find(|k| k.id == second).unwrap();
    assert!(!listed_second.current);
    assert_eq!(listed_second.hostname, "host-2");
    assert_eq!(listed_second.username, "tester");
    assert_eq!(listed_second.kdf, KdfParams::FOR_TESTS);
    assert!(repo.verify_key_files().await.unwrap().is_empty());
    // An empty password is refused.
    assert!(matches!(
        repo.add_key(&password(""), KdfParams::FOR_TESTS, &meta("h"))
            .await,
        Err(RepoError::KeyRefused(_))
    ));

    // Opened with the second password: the first key can go, the current one cannot.
    let repo = open(&location, Some("pw-2")).await.unwrap();
    assert_eq!(repo.current_key(), Some(second));
    let exclusive = repo.lock_exclusive("key remove").await.unwrap();
    let err = exclusive.remove_key(&second).await.unwrap_err();
    assert!(
        err.to_string().contains("opened the repository with"),
        "{err}"
    );
    exclusive.remove_key(&first).await.unwrap();
    // Now the only key.
    let err = exclusive.remove_key(&second).await.unwrap_err();
    assert!(err.to_string().contains("only key"), "{err}");
    exclusive.release().await.unwrap();
    open(&location, Some("pw-2")).await.unwrap();
    assert!(matches!(
        open(&location, Some("pw-1")).await,
        Err(RepoError::WrongPassword { .. })
    ));

    // A new password replaces the current key.
    let repo = open(&location, Some("pw-2")).await.unwrap();
    let exclusive = repo.lock_exclusive("key passwd").await.unwrap();
    let third = exclusive
        .change_password(&password("pw-3"), KdfParams::FOR_TESTS, &meta("host-3"))
        .await
        .unwrap();
    exclusive.release().await.unwrap();
    let repo = open(&location, Some("pw-3")).await.unwrap();
    assert_eq!(repo.current_key(), Some(third));
    assert!(matches!(
        open(&location, Some("pw-2")).await,
        Err(RepoError::WrongPassword { .. })
    ));
    assert_eq!(
        crate::support::files_below(&location.join("keys")),
        vec![PathBuf::from(third.to_hex())]
    );
}

const CANARY: &str = "AIRBACK-CANARY-5f0c2b9e";

/// Every zstd frame that can start in `bytes`, decompressed (at most 64 MiB each), without a
/// dictionary and with each of `dicts`; partial output of a broken frame counts too.
fn zstd_outputs(bytes: &[u8], dicts: &[Vec<u8>]) -> Vec<Vec<u8>> {
    const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    let mut outputs = Vec::new();
    for start in 0..bytes.len().saturating_sub(3) {
        if bytes[start..start + 4] != MAGIC {
            continue;
        }
        let mut attempts: Vec<Option<&[u8]>> = vec![None];
        attempts.extend(dicts.iter().map(|d| Some(d.as_slice())));
        for dict in attempts {
            let input = &bytes[start..];
            let decoder: Box<dyn Read + '_> = match dict {
                None => match zstd::stream::read::Decoder::with_buffer(input) {
                    Ok(d) => Box::new(d.single_frame()),
                    Err(_) => continue,
                },
                Some(d) => match zstd::stream::read::Decoder::with_dictionary(input, d) {
                    Ok(d) => Box::new(d.single_frame()),
                    Err(_) => continue,
                },
            };
            let mut decoder = decoder.take(64 << 20);
            let mut out = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            loop {
                match decoder.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            if !out.is_empty() {
                outputs.push(out);
            }
        }
    }
    outputs
}

/// Tries zlib, gzip, xz, lzma-alone and bz2 at every offset where such a stream can start
/// (Python's standard library; output capped at 64 MiB per attempt), and prints the path of
/// every file where the needle comes out.
const OTHER_CODECS: &str = r#"
import bz2, lzma, os, sys, zlib
needle = sys.argv[1].encode()
CAP = 64 << 20
def tries(b, i):
    if b[i] == 0x78 and i + 1 < len(b) and (b[i] * 256 + b[i + 1]) % 31 == 0:
        yield lambda: zlib.decompressobj().decompress(b[i:], CAP)
    if b.startswith(b"\x1f\x8b\x08", i):
        yield lambda: zlib.decompressobj(31).decompress(b[i:], CAP)
    if b.startswith(b"\xfd7zXZ\x00", i):
        yield lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(b[i:], CAP)
    if b.startswith(b"\x5d\x00\x00", i):
        yield lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(b[i:], CAP)
    if b.startswith(b"BZh", i) and i + 9 < len(b) and b[i + 4:i + 10] == b"\x31\x41\x59\x26\x53\x59":
        yield lambda: bz2.BZ2Decompressor().decompress(b[i:], CAP)
for root, _, files in os.walk(sys.argv[2]):
    for name in files:
        path = os.path.join(root, name)
        b = open(path, "rb").read()
        found = False
        for i in range(len(b)):
            for attempt in tries(b, i):
                try:
                    out = attempt()
                except Exception:
                    continue
                if needle in out:
                    found = True
                    break
            if found:
                break
        if found:
            print(path)
"#;

/// The repository files where `needle` comes out of zlib, gzip, xz, lzma or bz2 (see
/// [`OTHER_CODECS`]).
fn other_codec_hits(location: &Path, needle: &str) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", OTHER_CODECS, needle])
        .arg(location)
        .output()
        .expect("python3 runs (the export tests need it too)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| format!("{l} (zlib, gzip, xz, lzma or bz2)"))
        .collect()
}

/// The repository files where the canary can be read, raw or after zstd, zlib, gzip, xz,
/// lzma or bz2.
fn canary_hits(location: &Path) -> Vec<String> {
    let files = contents(location);
    let dict_magic = [0x37, 0xA4, 0x30, 0xEC];
    let dicts: Vec<Vec<u8>> = files
        .values()
        .flat_map(|bytes| {
            (0..bytes.len().saturating_sub(3))
                .filter(|&i| bytes[i..i + 4] == dict_magic)
                .map(|i| bytes[i..].to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    let needle = CANARY.as_bytes();
    let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
    let mut hits = Vec::new();
    for (path, bytes) in &files {
        if has(bytes) {
            hits.push(format!("{} (raw)", path.display()));
        } else if zstd_outputs(bytes, &dicts).iter().any(|o| has(o)) {
            hits.push(format!("{} (zstd)", path.display()));
        }
    }
    hits.extend(other_codec_hits(location, CANARY));
    hits
}

/// Puts the canary into the Notes of every project and into a 20 KB attachment of the first.
fn plant_canary(f: &Fake) {
    let schema = f.fake.schema_json(&f.base);
    let table = schema["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Projects")
        .expect("the demo base has Projects");
    let table_id = table["id"].as_str().unwrap();
    let field = |name: &str| crate::support::field_id(table, name);
    let (notes, brief) = (field("Notes"), field("Brief"));
    let records = f.fake.records_json(&f.base, table_id);
    assert!(!records.is_empty());
    for record in &records {
        let id = record["id"].as_str().unwrap();
        let mut fields = serde_json::Map::new();
        fields.insert(
            notes.clone(),
            format!("call back about {CANARY} tomorrow").into(),
        );
        f.fake
            .update_record_fields(&f.base, table_id, id, fields)
            .unwrap();
    }
    let mut content = crate::support::random_bytes(20_000, 7);
    for i in 0..50 {
        let at = i * 390;
        content[at..at + CANARY.len()].copy_from_slice(CANARY.as_bytes());
    }
    let first = records[0]["id"].as_str().unwrap();
    f.fake
        .add_attachment(&f.base, table_id, first, &brief, "contract.bin", content)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_is_unreadable_in_an_encrypted_repository_and_readable_in_a_plain_one() {
    let f = fake(FakeOptions::unlimited(Preset::Demo)).await;
    plant_canary(&f);
    let dir = tempfile::tempdir().unwrap();

    let plain = dir.path().join("plain");
    repo_with_snapshot(&f, &plain, None).await;
    let hits = canary_hits(&plain);
    println!("unencrypted: the canary is readable in {hits:?}");
    assert!(
        hits.iter().any(|h| h.starts_with("data/")),
        "the scan must find the canary in an unencrypted repository's data: {hits:?}"
    );

    // The other codecs' scan finds the canary in each kind of stream, behind other bytes.
    let streams = dir.path().join("streams");
    std::fs::create_dir(&streams).unwrap();
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import bz2, gzip, lzma, sys, zlib\n\
             d, c = sys.argv[1], sys.argv[2].encode() * 3\n\
             streams = [('zlib', zlib.compress(c)), ('gzip', gzip.compress(c)), \
             ('xz', lzma.compress(c)), ('lzma', lzma.compress(c, format=lzma.FORMAT_ALONE)), \
             ('bz2', bz2.compress(c))]\n\
             for name, z in streams: open(d + '/' + name, 'wb').write(b'junk' * 7 + z)",
        ])
        .arg(&streams)
        .arg(CANARY)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(other_codec_hits(&streams, CANARY).len(), 5);

    let encrypted = dir.path().join("encrypted");
    repo_with_snapshot(&f, &encrypted, Some("pw")).await;
    let hits = canary_hits(&encrypted);
    assert!(hits.is_empty(), "the canary is readable in {hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_rebuilds_an_encrypted_index_and_dictionary() {
    let mut options = FakeOptions::unlimited(Preset::Large);
    options.large = "tables=1,records=2000,attachments=4,min=2000,max=20000"
        .parse()
        .unwrap();
    let f = fake(options).await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    repo_with_snapshot(&f, &location, Some("pw")).await;
    // Lose every index file: repair rebuilds it from the sealed packs (salts from footers).
    for file in crate::support::files_below(&location.join("index")) {
        std::fs::remove_file(location.join("index").join(file)).unwrap();
    }
    let report = repair(&location).await;
    assert!(report.packs_adopted > 0, "{report:?}");
    assert!(report.packs_damaged.is_empty(), "{report:?}");
    check_clean(&location).await;

    // Damage the dictionary object: repair writes it back from its copy (sealed, under a new
    // name) and removes the damaged one.
    let dict = only_file(&location.join("dicts"));
    let len = std::fs::metadata(&dict).unwrap().len() as usize;
    flip(&dict, len / 2);
    let report = repair(&location).await;
    assert!(report.packs_damaged.is_empty(), "{report:?}");
    assert_eq!(report.dictionaries_restored.len(), 1, "{report:?}");
    assert_eq!(report.dictionaries_removed.len(), 1, "{report:?}");
    check_clean(&location).await;
    let dicts = crate::support::files_below(&location.join("dicts"));
    assert_eq!(dicts.len(), 1, "{dicts:?}");
    assert_ne!(location.join("dicts").join(&dicts[0]), dict);
}

async fn repair(location: &Path) -> airback::repair::IndexRepair {
    let repo = open(location, Some("pw")).await.unwrap();
    let exclusive = repo.lock_exclusive("repair index").await.unwrap();
    let report = airback::repair_index(&exclusive, false).await.unwrap();
    exclusive.release().await.unwrap();
    report
}

async fn check_clean(location: &Path) {
    let repo = open(location, Some("pw")).await.unwrap();
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..CheckOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}
