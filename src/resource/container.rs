//! `container.id` from `/proc/self/cgroup` (cgroup v1, and v2 where the path names the
//! container), else from `/proc/self/mountinfo` (cgroup v2 with a private cgroup namespace,
//! where `/proc/self/cgroup` only says `0::/`).

use std::path::Path;

use opentelemetry::KeyValue;

pub(crate) fn detect(root: &Path) -> Result<Vec<KeyValue>, String> {
    let id = match read_optional(root, "proc/self/cgroup")? {
        Some(text) => from_cgroup(&text),
        None => None,
    };
    let id = match id {
        Some(id) => Some(id),
        None => read_optional(root, "proc/self/mountinfo")?.and_then(|t| from_mountinfo(&t)),
    };
    Ok(id
        .map(|id| vec![KeyValue::new("container.id", id)])
        .unwrap_or_default())
}

/// A missing file means "not Linux" or "no such information", not a failure.
fn read_optional(root: &Path, file: &str) -> Result<Option<String>, String> {
    match std::fs::read_to_string(root.join(file)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read /{file}: {e}")),
    }
}

/// A full container id: 64 lowercase hex digits (Docker, containerd, CRI-O, Podman).
fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The last path segment of a cgroup line, stripped of the runtimes' decorations:
/// `/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`, `/system.slice/docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`.
pub(crate) fn from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        // hierarchy-ID:controller-list:cgroup-path; the path may itself contain ':'.
        let path = line.splitn(3, ':').nth(2)?;
        let last = path.trim_end().rsplit('/').next()?;
        let last = last.strip_suffix(".scope").unwrap_or(last);
        let id = last.rsplit('-').next().unwrap_or(last);
        let id = id.rsplit(':').next().unwrap_or(id);
        is_container_id(id).then(|| id.to_owned())
    })
}

/// The container's own files are bind-mounted from the runtime's folder for it:
/// `/var/lib/docker/containers/<id>/hostname`,
/// `/var/lib/containers/storage/overlay-containers/<id>/userdata/hostname`. The sandbox folders
/// of containerd (`.../sandboxes/<id>/...`) name the pod's pause container, not this one.
pub(crate) fn from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        // Field 4 is the root of the mount within its file system.
        let mount_root = line.split_whitespace().nth(3)?;
        let segments: Vec<&str> = mount_root.split('/').collect();
        segments.windows(2).find_map(|pair| {
            (matches!(pair[0], "containers" | "overlay-containers") && is_container_id(pair[1]))
                .then(|| pair[1].to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a3bf90e006b2cbb2e1ca0bd2ac1a7fd8ff7f2e1cc2d2b5e1fb3f4a6a0c3d9e81";

    #[test]
    fn cgroup_v1_docker_and_kubernetes_paths() {
        let docker = format!("12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n");
        assert_eq!(from_cgroup(&docker).as_deref(), Some(ID));
        let kube =
            format!("10:pids:/kubepods/burstable/pod2c48913c-b29f-11e7-9350-020968147796/{ID}\n");
        assert_eq!(from_cgroup(&kube).as_deref(), Some(ID));
    }

    #[test]
    fn cgroup_v2_systemd_scopes_of_each_runtime() {
        for prefix in ["docker-", "cri-containerd-", "crio-", "libpod-"] {
            let line = format!("0::/system.slice/{prefix}{ID}.scope\n");
            assert_eq!(from_cgroup(&line).as_deref(), Some(ID), "{prefix}");
        }
        let kube = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(from_cgroup(&kube).as_deref(), Some(ID));
    }

    #[test]
    fn no_id_outside_a_container() {
        assert_eq!(from_cgroup("0::/\n"), None);
        assert_eq!(
            from_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n"),
            None
        );
        // ECS Fargate names the task, not a container id.
        assert_eq!(
            from_cgroup("0::/ecs/8d8b3c5e9a2b4e1f/8d8b3c5e9a2b4e1f-3613453853\n"),
            None
        );
    }

    #[test]
    fn mountinfo_of_docker_and_podman_but_not_a_containerd_sandbox() {
        let docker = format!(
            "1536 1517 8:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(from_mountinfo(&docker).as_deref(), Some(ID));
        let podman = format!(
            "712 690 0:45 /containers/storage/overlay-containers/{ID}/userdata/hostname /etc/hostname rw - tmpfs tmpfs rw\n"
        );
        assert_eq!(from_mountinfo(&podman).as_deref(), Some(ID));
        let sandbox = format!(
            "900 880 8:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{ID}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(from_mountinfo(&sandbox), None);
    }

    #[test]
    fn files_under_an_injected_root() {
        let dir = std::env::temp_dir().join(format!("st-container-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc/self")).unwrap();
        std::fs::write(dir.join("proc/self/cgroup"), "0::/\n").unwrap();
        std::fs::write(
            dir.join("proc/self/mountinfo"),
            format!("1 2 8:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw - ext4 /dev/sda1 rw\n"),
        )
        .unwrap();
        let found = detect(&dir).unwrap();
        assert_eq!(found, vec![KeyValue::new("container.id", ID)]);
        let empty = std::env::temp_dir().join("st-container-none");
        assert!(detect(&empty).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
