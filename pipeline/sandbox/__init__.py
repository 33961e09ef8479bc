"""Local simulators of Rokt Calendar and SFMC REST (entry point: `rokt-sfmc sandbox`).

These routes exist only here, never in the service: `GET /__sandbox__/state`,
`POST /__sandbox__/faults`, `POST /__sandbox__/reset` and each simulator's seeding routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.sandbox import rokt, sfmc
from pipeline.sandbox.common import ServerThread

SANDBOX_ACCOUNT_CODE = "sandbox"
SANDBOX_MID = "100000001"
SANDBOX_JWT_SECRET = "sandbox-jwt-signing-secret-0123456789abcdef"
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"
SANDBOX_WEBHOOK_PATH_TOKEN = "sandbox-webhook-path-token-0123456789abcdef"
SANDBOX_SECRET_KEY = "sandbox-secret-key-for-sealing-tenant-secrets-0123456789"
SANDBOX_EID = "100000000"
SANDBOX_TSSD = "sandbox"


@dataclass
class Sandbox:
    rokt: rokt.RoktSimulator
    sfmc: sfmc.SfmcSimulator
    rokt_server: ServerThread
    sfmc_server: ServerThread

    def env(self) -> dict[str, str]:
        """The settings that point the service at these simulators."""
        return sandbox_env(self.rokt_server.url, self.sfmc_server.url)

    def stop(self) -> None:
        self.rokt.sender.stop()
        self.rokt_server.stop()
        self.sfmc_server.stop()


def sandbox_env(rokt_url: str, sfmc_url: str) -> dict[str, str]:
    return {
        "JB_JWT_SECRET": SANDBOX_JWT_SECRET,
        "ROKT_API_BASE_URL": rokt_url,
        "ROKT_CLIENT_ID": rokt.DEFAULT_CLIENT_ID,
        "ROKT_CLIENT_SECRET": rokt.DEFAULT_CLIENT_SECRET,
        "ROKT_ACCOUNT_CODE": SANDBOX_ACCOUNT_CODE,
        "SFMC_AUTH_BASE_URL": sfmc_url,
        "SFMC_CLIENT_ID": sfmc.DEFAULT_CLIENT_ID,
        "SFMC_CLIENT_SECRET": sfmc.DEFAULT_CLIENT_SECRET,
        "SFMC_ACCOUNT_ID": SANDBOX_MID,
        "ROKT_WEBHOOK_SECRET": SANDBOX_WEBHOOK_SECRET,
        "ROKT_WEBHOOK_PATH_TOKEN": SANDBOX_WEBHOOK_PATH_TOKEN,
    }


def sandbox_app_env(rokt_url: str, sfmc_url: str) -> dict[str, str]:
    """The service-wide settings of the app in Marketing Cloud (sign-in, sealed tenant secrets,
    where new tenants reach Rokt), pointed at the simulators: `/tssd/<tssd>` on the SFMC one
    stands in for `https://<tssd>.auth.marketingcloudapis.com`."""
    return {
        "SANDBOX": "1",
        "ROKT_API_DEFAULT_BASE_URL": rokt_url,
        "SECRET_KEY": SANDBOX_SECRET_KEY,
        "SFMC_APP_CLIENT_ID": sfmc.APP_CLIENT_ID,
        "SFMC_APP_CLIENT_SECRET": sfmc.APP_CLIENT_SECRET,
        "SFMC_APP_AUTH_BASE_URL": sfmc_url,
        "SFMC_TSSD_AUTH_URL": sfmc_url.rstrip("/") + "/tssd/{tssd}",
    }


def start_sandbox(host: str = "127.0.0.1", rokt_port: int = 0, sfmc_port: int = 0) -> Sandbox:
    rokt_sim, sfmc_sim = rokt.RoktSimulator(), sfmc.SfmcSimulator()
    return Sandbox(
        rokt=rokt_sim,
        sfmc=sfmc_sim,
        rokt_server=ServerThread(rokt_sim.app, host, rokt_port).start(),
        sfmc_server=ServerThread(sfmc_sim.app, host, sfmc_port).start(),
    )
