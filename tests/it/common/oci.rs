//! OCI helpers of the integration tests: the OCI runtime-spec schema validator, paths into
//! `../shared/golden/`, and builders for model values (image entries, the golden images).

use super::shared_dir;

use std::sync::{Arc, OnceLock};

use imagesmith::spec::merge::ImageDefaults;
use imagesmith::spec::model::{ImageConfig, ImageEntry, ImageRef, Pos};
use imagesmith::spec::reference::Reference;
use jsonschema::{Draft, Validator};

/// `../shared/golden/expected/<case>/containers/<rel>`, read in place.
pub fn golden(case: &str, rel: &str) -> String {
    let path = shared_dir()
        .join("golden/expected")
        .join(case)
        .join("containers")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = shared_dir().join("oci-runtime-spec-v1.2.1/schema/config-schema.json");
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).expect("reading the OCI schema");
        let schema: serde_json::Value =
            serde_json::from_str(&text).expect("parsing the OCI schema");
        jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_base_uri(format!("file://{}", path.display()))
            .build(&schema)
            .expect("compiling the OCI schema")
    })
}

/// Every violation of the OCI runtime-spec 1.2.1 `config.json` schema, as `pointer: message`
/// (empty when valid). Bytes that are not JSON are one violation.
pub fn schema_errors(config_json: &[u8]) -> Vec<String> {
    let doc: serde_json::Value = match serde_json::from_slice(config_json) {
        Ok(v) => v,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    validator()
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Panics with every violation when `config_json` does not validate.
pub fn assert_schema_valid(config_json: &[u8]) {
    let errors = schema_errors(config_json);
    assert!(
        errors.is_empty(),
        "config.json violates the OCI schema:\n{}\n{}",
        errors.join("\n"),
        String::from_utf8_lossy(config_json)
    );
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub fn some_strings(v: &[&str]) -> Option<Vec<String>> {
    Some(strings(v))
}

pub fn image_ref(s: &str) -> ImageRef {
    ImageRef {
        original: s.to_string(),
        reference: Reference::parse(s).expect("a valid test reference"),
        pos: pos(),
    }
}

pub fn pos() -> Pos {
    Pos {
        file: Arc::from("test.yml"),
        line: 1,
        column: 1,
    }
}

pub fn entry(name: &str, image: &str, config: ImageConfig) -> ImageEntry {
    ImageEntry {
        name: name.to_string(),
        image: image_ref(image),
        config,
        pos: pos(),
    }
}

/// `golden/base:1`: `CMD ["/bin/sh"]`, `ENV PATH=/bin` (make-images.sh).
pub fn base_image() -> ImageDefaults {
    ImageDefaults {
        entrypoint: vec![],
        cmd: strings(&["/bin/sh"]),
        env: some_strings(&["PATH=/bin"]),
        working_dir: String::new(),
    }
}

/// `golden/label:1`'s own config: `WORKDIR /tmp`, `ENTRYPOINT ["/bin/echo"]`,
/// `CMD ["from", "label"]`, and the `ENV` inherited from `golden/base:1`.
pub fn label_image() -> ImageDefaults {
    ImageDefaults {
        entrypoint: strings(&["/bin/echo"]),
        cmd: strings(&["from", "label"]),
        env: some_strings(&["PATH=/bin"]),
        working_dir: "/tmp".to_string(),
    }
}

/// `golden/label:1`'s `org.mobyproject.config` label, field by field:
/// `{"pid":"host","net":"host","capabilities":["CAP_SYS_ADMIN","CAP_NET_ADMIN"],
///   "binds":["/dev:/dev","/var:/var:rshared,rbind"],
///   "mounts":[{"destination":"/run","type":"tmpfs","options":["nosuid","nodev","mode=755"]}],
///   "env":["FROM_LABEL=1"],"readonly":true,"runtime":{"mkdir":["/var/lib/label"]}}`
pub fn golden_label() -> ImageConfig {
    use imagesmith::oci::types::Mount;
    use imagesmith::spec::model::Runtime;
    ImageConfig {
        pid: Some("host".into()),
        net: Some("host".into()),
        capabilities: some_strings(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]),
        binds: some_strings(&["/dev:/dev", "/var:/var:rshared,rbind"]),
        mounts: Some(vec![Mount {
            destination: "/run".into(),
            kind: "tmpfs".into(),
            options: strings(&["nosuid", "nodev", "mode=755"]),
            ..Mount::default()
        }]),
        env: some_strings(&["FROM_LABEL=1"]),
        readonly: Some(true),
        runtime: Some(Runtime {
            mkdir: some_strings(&["/var/lib/label"]),
            ..Runtime::default()
        }),
        ..ImageConfig::default()
    }
}
