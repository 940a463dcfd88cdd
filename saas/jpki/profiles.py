"""The JPKI certificate profiles: object identifiers and names (see shared JPKI.md).

Live and sandbox profiles differ only where they must: sandbox roots say ``O=JPKI-TEST``
and sandbox leaves carry the test policies, so a sandbox certificate can never pass as
live, whatever else it copies.
"""

from __future__ import annotations

from cryptography.x509.oid import ObjectIdentifier

POLICY_AUTH = "1.2.392.200149.8.5.1.3.30"
POLICY_SIGNATURE = "1.2.392.200149.8.5.1.1.20"
# Test cards: JPKI.md gives …8.5.1.0.20 for signatures; the auth test policy mirrors the
# live auth arc (…0.30) so the two kinds stay apart in the sandbox too.
POLICY_TEST_SIGNATURE = "1.2.392.200149.8.5.1.0.20"
POLICY_TEST_AUTH = "1.2.392.200149.8.5.1.0.30"

LIVE_ORGANISATION = "JPKI"
TEST_ORGANISATION = "JPKI-TEST"
OU_AUTH = "JPKI for user authentication"
OU_SIGNATURE = "JPKI for digital signature"
OU_JLIS = "Japan Agency for Local Authority Information Systems"

# The four attributes in the signature certificate's subjectAltName otherNames.
OID_NAME = ObjectIdentifier("1.2.392.200149.8.5.5.1")
OID_NAME_SUBSTITUTES = ObjectIdentifier("1.2.392.200149.8.5.5.2")
OID_GENDER = ObjectIdentifier("1.2.392.200149.8.5.5.3")
OID_BIRTHDATE = ObjectIdentifier("1.2.392.200149.8.5.5.4")
OID_ADDRESS = ObjectIdentifier("1.2.392.200149.8.5.5.5")
OID_ADDRESS_SUBSTITUTES = ObjectIdentifier("1.2.392.200149.8.5.5.6")
