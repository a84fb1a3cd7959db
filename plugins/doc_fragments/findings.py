# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The finding record (permfix.report/v1) that every module returning C(findings) returns.

    A module uses it in its RETURN block (C(extends_documentation_fragment) there) and keeps its
    own C(description) and C(sample) of C(findings); the keys below come from here. The record
    is the one C(_core/findings.py) builds and C(meta/report.schema.json) declares.
    """

    RETURN = r"""
findings:
  description:
    - The findings, one record per problem, in the C(permfix.report/v1) shape that the
      P(permfix.containers.report#filter) filter puts into C(report.json).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description:
        - Stable across runs (the class, the container, the kind of problem and the subject;
          never counts or times), so two reports can be compared.
      type: str
      returned: always
      sample: "bind_mount:web:/srv/app/data"
    class:
      description:
        - The finding class, one of V(bind_mount), V(named_volume), V(subid) or
          V(unprivileged_port).
      type: str
      returned: always
      sample: bind_mount
    severity:
      description:
        - V(error) when a container fails now, V(warning) when it will fail (or a setting is
          lost at reboot), V(info) otherwise.
      type: str
      returned: always
      sample: error
    subject:
      description: What the finding is about (a path, a volume, a user or a sysctl key).
      type: str
      returned: always
      sample: /srv/app/data
    container:
      description: The container concerned, or V(null) when the finding is about the host.
      type: str
      returned: always
      sample: web
    engine:
      description: V(docker) or V(podman), or V(null) when no engine is concerned.
      type: str
      returned: always
      sample: docker
    user:
      description: The rootless user concerned (podman), or V(null) for rootful engines and the host.
      type: str
      returned: always
      sample: null
    observed:
      description:
        - What the detection saw; its other keys depend on the class.
      type: dict
      returned: always
      sample: {"uid": 0, "gid": 0, "mode": "0755"}
      contains:
        evidence:
          description:
            - The facts the finding rests on, each a dict with C(source) (V(inspect), V(log),
              V(image) or V(host)), C(key) and C(value).
          type: list
          elements: dict
          returned: when the detection records its evidence
          sample: [{"source": "inspect", "key": "Config.User", "value": "1000:1000"}]
        confidence:
          description:
            - V(confirmed) when two independent facts agree, else V(likely) or V(possible).
          type: str
          returned: when the detection rates its confidence
          sample: confirmed
    expected:
      description: What the detection wants instead; its keys depend on the class.
      type: dict
      returned: always
      sample: {"uid": 1000, "gid": 1000, "access": "rw"}
    message:
      description: One sentence for a person, naming the container, the subject and the problem.
      type: str
      returned: always
      sample: container web runs as 1000:1000 and cannot write /srv/app/data (owned by 0:0, mode 0755)
    fixable:
      description: Whether a module of this collection can fix it on the host.
      type: bool
      returned: always
      sample: true
    fix:
      description: What the fix would do, or V(null) when it is not fixable.
      type: str
      returned: always
      sample: chown 1000:1000 on 1,204 of 1,310 entries
    advice:
      description:
        - Engine-neutral operations that fix it from the container's side (a list of dicts
          with C(operation) and its values, for example add a tmpfs, add a capability, set
          the user).
      type: list
      elements: dict
      returned: when the class can advise a change to the container
      sample: [{"operation": "set_user", "value": "0:0"}]
"""
