"""SFMC SOAP simulator (`POST /Service.asmx`): Create/Retrieve/Update of DataFolder and
DataExtension as Salesforce documents them. Placeholder: filled in by the provisioning work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from pipeline.sandbox.sfmc import SfmcSimulator


class SoapService:
    def __init__(self, sim: SfmcSimulator) -> None:
        self.sim = sim
        self.reset()

    def mount(self, app: Flask) -> None:
        """Register the SOAP route on the simulator's app."""

    def reset(self) -> None:
        self.folders: dict[int, dict[str, Any]] = {}
        self.definitions: dict[str, dict[str, Any]] = {}

    def state(self) -> dict[str, Any]:
        return {}
