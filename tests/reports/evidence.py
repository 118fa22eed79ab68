"""Evidence documents for the shipped packs: all pass, some fail, some not applicable."""

from __future__ import annotations

import copy
from typing import Any


def cloud_pass() -> dict[str, Any]:
    """A well-configured account: every cloud-baseline control passes."""
    return {
        "account": {"root": {"mfa_enabled": True, "access_keys_present": False},
                    "password_policy": {"minimum_length": 16, "reuse_prevention": 24}},
        "iam": {"users": [
            {"name": "alice", "console_access": True, "mfa_enabled": True,
             "access_keys": [{"id": "AKIA1", "active": True, "age_days": 30, "last_used_days": 1}]},
            {"name": "deploy", "console_access": False,
             "access_keys": [{"id": "AKIA2", "active": True, "age_days": 10, "last_used_days": 0},
                             {"id": "AKIA3", "active": False, "age_days": 400, "last_used_days": 300}]},
        ]},
        "storage": {"buckets": [
            {"name": "logs", "public": False, "block_public_access": True, "encrypted": True,
             "versioning": True},
            {"name": "data", "public": False, "block_public_access": True, "encrypted": True,
             "versioning": True},
        ]},
        "compute": {"volumes": [{"id": "vol-1", "encrypted": True}]},
        "databases": [{"id": "db-1", "encrypted": True, "publicly_accessible": False}],
        "kms": {"keys": [{"id": "k-1", "customer_managed": True, "rotation_enabled": True},
                         {"id": "aws/s3", "customer_managed": False}]},
        "logging": {"trails": [{"name": "main", "enabled": True, "multi_region": True,
                                "log_file_validation": True}]},
        "network": {
            "security_groups": [{"id": "sg-web", "ingress": [
                {"cidr": "0.0.0.0/0", "from_port": 443, "to_port": 443},
                {"cidr": "10.0.0.0/8", "from_port": 22, "to_port": 22}]}],
            "vpcs": [{"id": "vpc-1", "flow_logs_enabled": True}],
        },
    }


def cloud_mixed() -> dict[str, Any]:
    """Some controls fail, some have no evidence (no volumes, databases, keys or networks)."""
    evidence = cloud_pass()
    evidence["account"]["root"]["mfa_enabled"] = False  # CB-1.1 fails
    evidence["iam"]["users"].append({"name": "bob", "console_access": True, "mfa_enabled": False,
                                     "access_keys": []})  # CB-1.4 fails (bob)
    evidence["iam"]["users"][0]["access_keys"][0]["age_days"] = 200  # CB-1.5 fails (AKIA1)
    evidence["storage"]["buckets"][1]["public"] = True  # CB-2.1 fails (data)
    del evidence["compute"]  # CB-2.4 not applicable
    evidence["databases"] = []  # CB-2.5, CB-2.6 not applicable
    evidence["kms"] = {"keys": [{"id": "aws/s3", "customer_managed": False}]}  # CB-3.1 n/a
    evidence["network"] = {"security_groups": [{"id": "sg-ssh", "ingress": [
        {"cidr": "0.0.0.0/0", "from_port": 0, "to_port": 65535}]}]}  # CB-5.1 fails; CB-5.2 n/a
    return evidence


CLOUD_MIXED_FAILED = {"CB-1.1", "CB-1.4", "CB-1.5", "CB-2.1", "CB-5.1"}
CLOUD_MIXED_NA = {"CB-2.4", "CB-2.5", "CB-2.6", "CB-3.1", "CB-5.2"}


def soc2_pass() -> dict[str, Any]:
    """A well-run identity programme: every soc2-access-control control passes."""
    return {
        "identity": {"sso_enforced": True, "password_policy": {"minimum_length": 14},
                     "session_idle_timeout_minutes": 15},
        "users": [
            {"email": "alice@example.com", "active": True, "mfa_enabled": True, "privileged": True,
             "approved_by": "cto@example.com", "last_login_days": 1},
            {"email": "bob@example.com", "active": True, "mfa_enabled": True, "last_login_days": 30},
            {"email": "carol@example.com", "active": False, "terminated": True, "mfa_enabled": False},
        ],
        "access_reviews": [{"system": "prod-aws", "completed_days_ago": 20},
                           {"system": "github", "completed_days_ago": 85}],
        "offboarding": [{"user": "carol@example.com", "access_revoked_hours": 2}],
        "service_accounts": [{"name": "ci", "owner": "platform", "interactive_login": False}],
        "production_access": {"requires_approval": True,
                              "break_glass": {"logged": True, "alerting": True}},
    }


def soc2_mixed() -> dict[str, Any]:
    """Some controls fail, some have no evidence."""
    evidence = copy.deepcopy(soc2_pass())
    evidence["users"][1]["mfa_enabled"] = False  # AC-02 fails (bob)
    evidence["users"][1]["last_login_days"] = 120  # AC-10 fails (bob)
    evidence["users"].append({"email": "dave@example.com", "active": True, "terminated": True,
                              "mfa_enabled": True, "last_login_days": 1})  # AC-08 fails
    evidence["access_reviews"][1]["completed_days_ago"] = 200  # AC-05 fails (github)
    evidence["offboarding"].append({"user": "dave@example.com"})  # AC-07 fails: never revoked
    del evidence["service_accounts"]  # AC-11, AC-12 not applicable
    del evidence["identity"]["password_policy"]  # AC-03 not applicable
    del evidence["production_access"]["break_glass"]  # AC-14 not applicable
    return evidence


SOC2_MIXED_FAILED = {"AC-02", "AC-05", "AC-07", "AC-08", "AC-10"}
SOC2_MIXED_NA = {"AC-03", "AC-11", "AC-12", "AC-14"}
