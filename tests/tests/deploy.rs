//! deploy/site.yml, the Ansible playbook, run against this machine over
//! Ansible's local connection: it copies the built tinyvr and image, runs
//! scripts/setup in run-only mode, runs an experiment and fetches its
//! results.json back.

use serde_json::Value;
use std::process::Command;
use tinyvr_tests::*;

#[test]
fn the_playbook_runs_an_experiment_on_localhost_and_fetches_its_results() {
    require!(is_root(), "needs root (namespaces)");
    require!(
        has_cmd("ansible-playbook"),
        "needs ansible-playbook (scripts/setup installs ansible-core)"
    );
    // The playbook copies the VM image too, which is built for it, and a
    // router runs from it through the host's libvirtd.
    require!(vm_can_run().is_none(), vm_can_run().unwrap_or(""));
    require!(
        libvirtd_missing().is_none(),
        libvirtd_missing().unwrap_or("")
    );
    let dir = Scratch::new("deploy");
    let name = format!("d{}", std::process::id() % 100_000);
    let vm = format!("{name}v");
    let exp_dir = dir.0.join("exp");
    std::fs::create_dir_all(&exp_dir).unwrap();
    std::fs::write(
        exp_dir.join("router.toml"),
        std::fs::read_to_string(workspace().join("experiments/router.toml")).unwrap(),
    )
    .unwrap();
    let exp = exp_dir.join("tiny.toml");
    std::fs::write(
        &exp,
        format!(
            "name = \"tiny\"\nmode = \"sweep\"\ntrial_secs = 0.5\ndrain_ms = 200\n[traffic]\nrates_pps = [1000]\n\
             [[router]]\nconfig = \"router.toml\"\nplatform = \"netns\"\nname = \"{name}\"\n\
             [[router]]\nconfig = \"router.toml\"\nplatform = \"vm\"\nlauncher = \"libvirt\"\nname = \"{vm}\"\n"
        ),
    )
    .unwrap();
    let (remote, back) = (dir.0.join("remote"), dir.0.join("back"));
    let var = |k: &str, v: &std::path::Path| format!("{k}={}", v.display());
    let out = Command::new("ansible-playbook")
        .args(["-i", "localhost,", "-c", "local"])
        .arg(workspace().join("deploy/site.yml"))
        .args(["-e", &var("experiment", &exp)])
        .args(["-e", &var("tinyvr_bin", &bin("tinyvr"))])
        .args(["-e", &var("tinyvr_init", &bin("tinyvr-init"))])
        .args(["-e", &var("image_dir", vm_image())])
        .args(["-e", &var("remote_dir", &remote)])
        .args(["-e", &var("results_dir", &back)])
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = back.join("localhost/tiny/results.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&fetched).unwrap()).unwrap();
    // Both routers forwarded all of the 1000 pps: the one in a bare
    // namespace and the VM from the copied image, through libvirt.
    for n in [&name, &vm] {
        let t = r["results"]["trials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["router"] == n.as_str())
            .unwrap_or_else(|| panic!("no trial of {n}: {r}"));
        assert_eq!(t["received"], t["sent"]["packets"], "{t}");
        assert!(t["received"].as_u64().unwrap() > 0, "{t}");
    }
    let env: Value = serde_json::from_str(
        &std::fs::read_to_string(back.join("localhost/tiny/environment.json")).unwrap(),
    )
    .unwrap();
    let vm_ready = env["routers"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| x["vm"]["libvirt"]["uuid"].as_str().map(|_| x["vm"].clone()))
        .expect("the VM ran through libvirt");
    assert!(vm_ready["qemu_pid"].as_u64().is_some(), "{vm_ready}");
    assert_eq!(leftovers(&name), Vec::<String>::new());
    assert_eq!(leftovers(&vm), Vec::<String>::new());
}
