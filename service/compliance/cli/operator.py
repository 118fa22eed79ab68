"""``compliance operator``: the kopf operator (same as ``kopf run -m compliance_operator.main``)."""

from __future__ import annotations

import click


@click.command()
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Watch this namespace (repeatable). Default: COMPLIANCE_OPERATOR_NAMESPACES, "
                   "else all namespaces.")
@click.option("--standalone", is_flag=True, default=None,
              help="No peering (a single replica). Default: COMPLIANCE_OPERATOR_STANDALONE.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logs.")
def operator(namespaces: tuple[str, ...], standalone: bool | None, verbose: bool) -> None:
    """Run the operator: worker autoscaling from queue + breakers, DLQ replay Jobs."""
    import kopf

    import compliance_operator.main  # registers the handlers
    from compliance_operator.settings import OperatorSettings

    cfg = OperatorSettings()
    watched = list(namespaces) or cfg.namespaces
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    kopf.run(
        registry=compliance_operator.main.registry(),
        standalone=bool(standalone or cfg.standalone),
        peering_name=cfg.peering_name,
        liveness_endpoint=cfg.liveness_endpoint or None,
        clusterwide=not watched,
        namespaces=watched,
    )
