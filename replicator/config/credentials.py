"""``credentials:``: per region, a role to assume (from the default chain) or a profile.

    credentials:
      eu-west-1: {role_arn: arn:aws:iam::111111111111:role/replicator-target, external_id: x}
      cn-north-1: {profile: china}

A role is assumed through botocore (``replicator.aws.accounts``); a region of another
partition takes a profile, since no role can be assumed across partitions. No key is
ever written here: a profile names keys kept in the AWS config files.
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import BaseModel, ConfigDict, model_validator

from replicator.config.messages import problem, quote

_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_FIELDS = ("role_arn", "external_id", "session_name", "profile")
_ONE_OF = "give role_arn (optionally external_id, session_name) or profile"


class RegionCredentials(BaseModel):
    """The identity a region's clients sign with instead of the default chain's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role_arn: str | None = None
    external_id: str | None = None
    session_name: str | None = None
    profile: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: object) -> object:
        # Told here: the generic "allowed keys" of a mapping under a region are endpoints'.
        if isinstance(value, dict):
            for key in value:
                if key not in _FIELDS:
                    raise problem(f"unknown key {quote(str(key))}", _ONE_OF)
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> Self:
        if (self.role_arn is None) == (self.profile is None):
            what = "names both a role and a profile" if self.profile else "names no identity"
            raise problem(what, _ONE_OF)
        if self.profile is not None and (self.external_id or self.session_name):
            what = "external_id and session_name go with role_arn"
            raise problem(what, "put them in the profile")
        if self.role_arn is not None and not _ROLE_ARN.match(self.role_arn):
            fix = "use e.g. arn:aws:iam::111111111111:role/replicator-target"
            raise problem(f"role_arn {quote(self.role_arn)} is not an IAM role ARN", fix)
        if self.session_name is not None and not _SESSION_NAME.match(self.session_name):
            fix = "use 2 to 64 characters from a-z A-Z 0-9 + = , . @ _ -"
            raise problem(f"session_name {quote(self.session_name)} is not valid", fix)
        if self.external_id is not None and not 2 <= len(self.external_id) <= 1224:
            raise problem("external_id is not 2 to 1224 characters", "use the id the role expects")
        if self.profile is not None and not self.profile.strip():
            raise problem("profile is empty", "name a profile of the AWS config files")
        return self
