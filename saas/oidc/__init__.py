"""Each tenant as its own OpenID Provider (issue 6): signing keys and JWKS first."""
