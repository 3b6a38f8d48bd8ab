"""Promotion applied to a registry: ``promote`` and ``rollback`` move aliases (``production``, ``previous``), never
stages, under the registry lock (``rosetta.registry.lock``), by the rule of ``rosetta.registry.rule``; every decision
joins the version's history (``rosetta.registry.decisions``) and is printed.
"""
from __future__ import annotations

from typing import Sequence

from rosetta.config import Config
from rosetta.registry.decisions import DecisionRecord, record_decision
from rosetta.registry.guard import score_production, unscored_guarded
from rosetta.registry.lock import locked
from rosetta.registry.refs import RegistryError, aliases, get_version, registry_client
from rosetta.registry.rule import Decision, Evidence, decide

TAG_REPLACED = "promotion.replaced"  # the production version this one replaced: where a rollback returns


def _evidence(client, name: str, version: str, metric: str, guarded: Sequence[str] = ()) -> Evidence:
    return Evidence.from_tags(version, get_version(client, name, version).tags, metric, guarded)


def _record(client, decision: Decision, outcome: str, command: str, reason: str | None = None,
            about_production: bool = False) -> None:
    """``outcome`` of ``decision`` added to the history of its candidate, or (``about_production``) of the version
    that held production before it; each row shows that version's own score beside production's then."""
    version, score = ((decision.production_version, decision.production_score) if about_production
                      else (decision.version, decision.score))
    record_decision(client, decision.model_name, version, DecisionRecord(
        outcome, reason or decision.reason, command, decision.metric, score, decision.production_version,
        decision.production_score, None if about_production else decision.set_deltas or None))


@locked
def promote(cfg: Config, version: str | int | None = None, force: bool = False, command: str | None = None
            ) -> Decision:
    """Decide whether ``version`` (default: the newest) takes alias ``registry.alias``, apply it and record it.

    The version it replaces gets ``registry.previous_alias``. The decision joins the candidate's history (and
    the replaced version's) and is printed, whatever it is; ``command`` names what decided, for the history.
    """
    command = command or ("rosetta promote --force" if force else "rosetta promote")
    reg = cfg.registry
    client = registry_client(cfg)
    held = aliases(client, reg.model_name)
    if version is None:
        versions = client.search_model_versions(f"name='{reg.model_name}'")
        if not versions:
            raise RegistryError(f"registered model {reg.model_name!r} has no version yet; run the pipeline first")
        version = max(int(v.version) for v in versions)
    version = str(version)
    candidate = _evidence(client, reg.model_name, version, reg.metric, reg.guarded_sets)
    current = held.get(reg.alias)
    if current and current != version and not force:
        unscored = unscored_guarded(reg.guarded_sets, get_version(client, reg.model_name, version).tags,
                                    get_version(client, reg.model_name, current).tags)
        if unscored:
            score_production(cfg, client, reg.model_name, current, unscored)
    production = _evidence(client, reg.model_name, current, reg.metric, reg.guarded_sets) if current else None
    decision = decide(candidate, production, reg, force)
    if production is not None and production.version == version:
        print(decision.summary(), flush=True)  # nothing changes, and production keeps its own record
        return decision
    if not decision.promoted:
        _record(client, decision, "not promoted", command)
        print(decision.summary(), flush=True)
        return decision
    before = {reg.alias: current, reg.previous_alias: held.get(reg.previous_alias)}
    try:
        if current:
            client.set_registered_model_alias(reg.model_name, reg.previous_alias, current)
            client.set_model_version_tag(reg.model_name, version, TAG_REPLACED, current)
        client.set_registered_model_alias(reg.model_name, reg.alias, version)
        if current:
            _record(client, decision, "replaced", command, f"v{version} took {reg.alias!r}: {decision.reason}",
                    about_production=True)
        _record(client, decision, "promoted", command)
    except Exception:
        # A promotion whose history cannot be written (a user without EDIT on the runs' experiment, a server gone)
        # does not stand: the aliases go back to where they were, then the failure is said.
        _restore_aliases(client, reg.model_name, before)
        raise
    print(decision.summary(), flush=True)
    return decision


def _restore_aliases(client, name: str, aliases_before: dict[str, str | None]) -> None:
    for alias, held_version in aliases_before.items():
        try:
            if held_version:
                client.set_registered_model_alias(name, alias, held_version)
            else:
                client.delete_registered_model_alias(name, alias)
        except Exception:  # the failure being raised says more than this one; the next promotion sets them again
            continue


@locked
def rollback(cfg: Config) -> Decision:
    """Give ``registry.alias`` back to the ``registry.previous_alias`` version; that version's own
    predecessor (if any) becomes the new previous, so rollbacks can be repeated."""
    reg = cfg.registry
    client = registry_client(cfg)
    held = aliases(client, reg.model_name)
    current, previous = held.get(reg.alias), held.get(reg.previous_alias)
    if current is None:
        raise RegistryError(f"no version of {reg.model_name} has alias {reg.alias!r}; there is nothing to roll back")
    if previous is None or previous == current:
        raise RegistryError(f"{reg.model_name} has no {reg.previous_alias!r} version to roll back to; promote one "
                            "by hand with `rosetta promote --version N --force`")
    restored = client.get_model_version(reg.model_name, previous)
    client.set_registered_model_alias(reg.model_name, reg.alias, previous)
    earlier = restored.tags.get(TAG_REPLACED)
    if earlier and earlier not in (current, previous):
        client.set_registered_model_alias(reg.model_name, reg.previous_alias, earlier)
    else:
        client.delete_registered_model_alias(reg.model_name, reg.previous_alias)
    reason = f"rolled back from v{current} with `rosetta rollback`"
    evidence = Evidence.from_tags(previous, restored.tags, reg.metric)
    decision = Decision(reg.model_name, previous, True, reason, evidence.metric, evidence.score, current,
                        _evidence(client, reg.model_name, current, reg.metric).score, action="rollback")
    _record(client, decision, "rolled back", "rosetta rollback", f"replaced by v{previous} with `rosetta rollback`",
            about_production=True)
    _record(client, decision, "promoted", "rosetta rollback")
    print(decision.summary(), flush=True)
    return decision
