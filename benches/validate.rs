//! Benchmark (not a test): `imagesmith validate` of generated files with 50, 500 and 2000
//! containers, each with a realistic set of fields (binds, capabilities, mounts, devices,
//! resources, runtime, rlimits, ids naming other containers, …). Prints a table of
//! min / median / max milliseconds over many runs of `spec::load` (read + parse + schema +
//! checks, exactly what `validate` does), and the median of the YAML parsing alone (the
//! event parser is most of the cost). Run with `cargo bench --bench validate`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use imagesmith::spec::{self, Input};

fn entry(out: &mut String, i: usize) {
    let _ = write!(
        out,
        r#"  - name: svc-{i}
    image: registry.example.com:5000/team/service-{i}:1.{i}
    command: ["/usr/bin/service", "--id", "{i}", "--config", "/etc/service/{i}.conf"]
    env:
      - SERVICE_ID={i}
      - LOG_LEVEL=info
    capabilities: [CAP_NET_ADMIN, CAP_SYS_ADMIN, net_raw, CAP_CHOWN]
    binds:
      - /var/log:/var/log
      - /etc/resolv.conf:/etc/resolv.conf:ro
      - data:/data:rw,rshared
    mounts:
      - type: cgroup
        options: ["rw", "nosuid", "noexec", "nodev", "relatime"]
      - destination: /tmp
        type: tmpfs
        options: [size=10m]
    devices:
      - path: /dev/console
        type: c
        major: 5
        minor: 1
        mode: "0666"
    tmpfs: ["/scratch:size=1m"]
    rlimits: ["nofile,1024,2048", "nproc,unlimited,unlimited"]
    uid: svc-{prev}
    gid: {i}
    additionalGids: [root, "27"]
    net: host
    pid: new
    readonly: true
    oomScoreAdj: -100
    sysctl:
      net.ipv4.ip_forward: "1"
    resources:
      memory: {{limit: 268435456, disableOOMKiller: false}}
      cpu: {{shares: 512, cpus: "0-1"}}
      blockio: {{weight: 100}}
    runtime:
      mkdir: ["/var/lib/svc-{i}"]
      bindNS: {{net: /run/netns/svc-{i}}}
"#,
        prev = i.saturating_sub(1),
    );
}

fn generate(containers: usize) -> String {
    let mut s = String::from(
        "kernel:\n  image: linuxkit/kernel:6.6.71\n  cmdline: \"console=tty0 console=ttyS0\"\ninit:\n  - linuxkit/init:v1\n  - linuxkit/runc:v1\nvolumes:\n  - name: data\n",
    );
    s.push_str("onboot:\n");
    let onboot = containers / 5;
    for i in 0..onboot {
        entry(&mut s, i);
    }
    s.push_str("services:\n");
    for i in onboot..containers {
        entry(&mut s, i);
    }
    s.push_str("files:\n");
    for i in 0..containers / 10 {
        let _ = writeln!(
            s,
            "  - path: etc/service/{i}.conf\n    contents: \"id={i}\\n\"\n    mode: \"0644\"\n    uid: svc-{i}"
        );
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // IMAGESMITH_BENCH_DIR=<dir> keeps the generated files there (to time the CLI on them:
    // `time imagesmith validate <dir>/system-500.yml`); otherwise a temporary directory.
    let tmp = tempfile::tempdir();
    let dir = match (std::env::var_os("IMAGESMITH_BENCH_DIR"), &tmp) {
        (Some(d), _) => std::path::PathBuf::from(d),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "{:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>13}",
        "containers", "bytes", "runs", "min ms", "median ms", "max ms", "YAML parse ms"
    );
    for (containers, runs) in [(50, 200), (500, 50), (2000, 10)] {
        let text = generate(containers);
        let path = dir.join(format!("system-{containers}.yml"));
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        let input = [Input::Path(path.clone())];
        match spec::load(&input) {
            Ok(l) => assert_eq!(l.spec.onboot.len() + l.spec.services.len(), containers),
            Err(d) => {
                eprintln!("the generated file does not validate:\n{d}");
                std::process::exit(1);
            }
        }
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let r = spec::load(&input);
                let e = t.elapsed();
                std::hint::black_box(r.is_ok());
                e
            })
            .collect();
        times.sort();
        let mut parse: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(spec::yaml::parse(&text).is_ok());
                t.elapsed()
            })
            .collect();
        parse.sort();
        println!(
            "{containers:>10} {:>10} {runs:>6} {:>9.2} {:>9.2} {:>9.2} {:>13.2}",
            text.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            ms(parse[parse.len() / 2])
        );
    }
}
