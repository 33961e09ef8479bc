"""SFMC SOAP client (Create, Retrieve, Update): what the REST API cannot do yet, such as creating
data extensions and folders (docs/vendors/sfmc-app.md §C).

SOAP 1.1: `text/xml` with a `SOAPAction` header, as the body samples of Salesforce's
"Creating a Data Extension Using the Web Service API" page. Authentication is the tenant's REST
token (the same `SharedToken` the REST client uses) in a `<fueloauth>` header, sent to
`soap_instance_url + "Service.asmx"` ("Authenticate SOAP API Requests"); the token acts only in
the business unit it was issued for.

XML is built with lxml and read with a strict parser: no entity expansion, no network, no huge
trees. Every `Results/StatusCode` and the `OverallStatus` are checked. Throttling is HTTP 500
with a SOAP fault ("Rate Limiting": "API requests produce HTTP 500 error messages"), told apart
from other server faults by its fault string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from lxml import etree

from pipeline.clients.errors import PermanentError, RetryableError, Throttled, Unauthorized
from pipeline.clients.http import new_session, raise_for_status, send
from pipeline.clients.tokens import SharedToken
from pipeline.infra.logsafe import mask_emails

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER_API = "http://exacttarget.com/wsdl/partnerAPI"
FUEL_NS = "http://exacttarget.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {"soap": SOAP_ENV, "xsi": XSI}
# SOAP throttling carries no Retry-After; wait like REST's default before trying again
THROTTLE_BACKOFF_SECONDS = 5.0
_THROTTLE_WORDS = re.compile(r"throttl|rate limit|limited rate|too many|request limit", re.IGNORECASE)
_AUTH_WORDS = re.compile(r"login failed|token expired|not authorized|invalid token", re.IGNORECASE)
_OK_RETRIEVE = ("OK", "MoreDataAvailable")

# the one strict parser: entities are not expanded, nothing is fetched, no huge trees
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    remove_comments=True,
    remove_pis=True,
)


def parse_xml(body: bytes) -> etree._Element:
    """The document root; raises etree.XMLSyntaxError (also for a DOCTYPE: SOAP forbids one)."""
    root = etree.fromstring(body, _PARSER)
    if root.getroottree().docinfo.doctype:
        raise etree.XMLSyntaxError("a DOCTYPE is not allowed in a SOAP message", None, 1, 1)
    return root


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname


@dataclass(frozen=True)
class SimpleFilter:
    """`SimpleFilterPart`: property, operator (equals, notEquals, ...), value."""

    property: str
    value: str
    operator: str = "equals"


@dataclass(frozen=True)
class AndFilter:
    """`ComplexFilterPart` joining two simple filters with AND."""

    left: SimpleFilter
    right: SimpleFilter


Filter = SimpleFilter | AndFilter


@dataclass(frozen=True)
class SoapObject:
    """One object of a Create/Update: its `xsi:type` and its properties. A property's value is a
    scalar (bool as true/false), a mapping (a nested element) or a list (the element repeated)."""

    type: str
    properties: Mapping[str, Any]


def _append(parent: etree._Element, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list | tuple):
        for item in value:
            _append(parent, name, item)
        return
    child = etree.SubElement(parent, _q(PARTNER_API, name))
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _append(child, key, inner)
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    else:
        child.text = str(value)


def _filter_element(parent: etree._Element, tag: str, part: Filter) -> None:
    element = etree.SubElement(parent, _q(PARTNER_API, tag))
    if isinstance(part, SimpleFilter):
        element.set(_q(XSI, "type"), "SimpleFilterPart")
        _append(element, "Property", part.property)
        _append(element, "SimpleOperator", part.operator)
        _append(element, "Value", part.value)
    else:
        element.set(_q(XSI, "type"), "ComplexFilterPart")
        _filter_element(element, "LeftOperand", part.left)
        _append(element, "LogicalOperator", "AND")
        _filter_element(element, "RightOperand", part.right)


def envelope(access_token: str, body_element: etree._Element) -> bytes:
    """A SOAP 1.1 envelope carrying the token in `<fueloauth xmlns="http://exacttarget.com">`."""
    root = etree.Element(_q(SOAP_ENV, "Envelope"), nsmap=NSMAP)
    header = etree.SubElement(root, _q(SOAP_ENV, "Header"))
    token = etree.SubElement(header, _q(FUEL_NS, "fueloauth"), nsmap={None: FUEL_NS})
    token.text = access_token
    etree.SubElement(root, _q(SOAP_ENV, "Body")).append(body_element)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def retrieve_request(
    object_type: str, properties: Iterable[str], where: Filter | None = None, continue_id: str = ""
) -> etree._Element:
    message = etree.Element(_q(PARTNER_API, "RetrieveRequestMsg"), nsmap={None: PARTNER_API})
    request = etree.SubElement(message, _q(PARTNER_API, "RetrieveRequest"))
    if continue_id:
        _append(request, "ContinueRequest", continue_id)
    _append(request, "ObjectType", object_type)
    _append(request, "Properties", list(properties))
    if where is not None:
        _filter_element(request, "Filter", where)
    return message


def change_request(action: str, objects: Iterable[SoapObject]) -> etree._Element:
    """`CreateRequest` or `UpdateRequest` with empty `Options` and the objects."""
    message = etree.Element(_q(PARTNER_API, f"{action}Request"), nsmap={None: PARTNER_API})
    etree.SubElement(message, _q(PARTNER_API, "Options"))
    for item in objects:
        element = etree.SubElement(message, _q(PARTNER_API, "Objects"))
        element.set(_q(XSI, "type"), item.type)
        for name, value in item.properties.items():
            _append(element, name, value)
    return message


def flatten(element: etree._Element, prefix: str = "") -> dict[str, str]:
    """An object's properties as {"Name": "x", "SendableSubscriberField.Name": "_SubscriberKey"}."""
    values: dict[str, str] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = prefix + local_name(child)
        if len(child):
            values.update(flatten(child, name + "."))
        elif child.get(_q(XSI, "nil")) != "true":
            values[name] = (child.text or "").strip()
    return values


def _text(element: etree._Element, name: str) -> str:
    found = element.find(_q(PARTNER_API, name))
    return (found.text or "").strip() if found is not None else ""


@dataclass(frozen=True)
class Fault:
    code: str  # faultcode's local part: Client, Server, Security
    message: str

    @property
    def throttled(self) -> bool:
        return bool(_THROTTLE_WORDS.search(self.message))

    @property
    def auth(self) -> bool:
        return self.code.endswith("Security") or bool(_AUTH_WORDS.search(self.message))


def find_fault(root: etree._Element) -> Fault | None:
    body = root.find(_q(SOAP_ENV, "Body"))
    fault = body.find(_q(SOAP_ENV, "Fault")) if body is not None else None
    if fault is None:
        return None
    code = (fault.findtext("faultcode") or "").strip()
    return Fault(code=code.rpartition(":")[2], message=(fault.findtext("faultstring") or "").strip())


class SoapClient:
    """Create/Retrieve/Update against the SOAP API of the tenant's business unit.

    `gate` runs right before every call (the tenant's SFMC rate limiter). No hidden retries: a
    refused token is renewed and the call sent once more, everything else raises a typed error.
    """

    def __init__(
        self,
        token: SharedToken,
        timeout: tuple[float, float],
        session: requests.Session | None = None,
        gate: Callable[[], None] | None = None,
    ) -> None:
        self.token = token
        self.timeout = timeout
        self.session = session or new_session()
        self.gate = gate or (lambda: None)

    def retrieve(
        self, object_type: str, properties: Iterable[str], where: Filter | None = None
    ) -> list[dict[str, str]]:
        """Every object that matches, each as flattened properties; follows MoreDataAvailable."""
        properties = list(properties)
        rows: list[dict[str, str]] = []
        continue_id = ""
        while True:
            request = retrieve_request(object_type, properties, where, continue_id)
            response = self._call("Retrieve", request, f"SOAP Retrieve {object_type}")
            status = _text(response, "OverallStatus")
            if status not in _OK_RETRIEVE:
                raise PermanentError(f"SOAP Retrieve {object_type}: {mask_emails(status)[:500]}")
            rows.extend(flatten(r) for r in response.findall(_q(PARTNER_API, "Results")))
            if status != "MoreDataAvailable":
                return rows
            continue_id = _text(response, "RequestID")
            if not continue_id:
                raise RetryableError(f"SOAP Retrieve {object_type}: MoreDataAvailable without RequestID")

    def create(self, objects: list[SoapObject]) -> list[dict[str, str]]:
        """The results (StatusCode, StatusMessage, NewID, NewObjectID, ...), all OK, in order."""
        return self._change("Create", objects)

    def update(self, objects: list[SoapObject]) -> list[dict[str, str]]:
        return self._change("Update", objects)

    def _change(self, action: str, objects: list[SoapObject]) -> list[dict[str, str]]:
        what = f"SOAP {action} {', '.join(sorted({o.type for o in objects}))}"
        response = self._call(action, change_request(action, objects), what)
        results = []
        for element in response.findall(_q(PARTNER_API, "Results")):
            results.append({local_name(c): (c.text or "").strip() for c in element if len(c) == 0})
        failed = [r for r in results if r.get("StatusCode") != "OK"]
        if failed:
            reasons = "; ".join(
                f"{r.get('StatusCode') or 'no StatusCode'}: {r.get('StatusMessage', '')}"
                + (f" (ErrorCode {r['ErrorCode']})" if r.get("ErrorCode") else "")
                for r in failed
            )
            raise PermanentError(f"{what}: {mask_emails(reasons)[:500]}")
        overall = _text(response, "OverallStatus")
        if overall != "OK" or len(results) != len(objects):
            raise PermanentError(
                f"{what}: OverallStatus {mask_emails(overall)[:300]!r}, {len(results)} results "
                f"for {len(objects)} objects"
            )
        return results

    def _call(self, action: str, body_element: etree._Element, what: str) -> etree._Element:
        """Send once (twice when the token was refused); the response element inside Body."""
        for _attempt in (1, 2):
            token = self.token.get()
            self.gate()
            response = send(
                self.session,
                "POST",
                token["soap_instance_url"].rstrip("/") + "/Service.asmx",
                data=envelope(token["access_token"], body_element),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action},
                timeout=self.timeout,
            )
            root = self._read(response)
            fault = find_fault(root) if root is not None else None
            if response.status_code in (401, 403) or (fault is not None and fault.auth):
                self.token.invalidate(token["access_token"])
                continue
            self._raise_for(response, root, fault, what)
            body = root.find(_q(SOAP_ENV, "Body")) if root is not None else None
            answer = body[0] if body is not None and len(body) else None
            expected = f"{action}ResponseMsg" if action == "Retrieve" else f"{action}Response"
            if answer is None or local_name(answer) != expected:
                raise RetryableError(f"{what}: the answer holds no {expected}")
            return answer
        raise Unauthorized(f"{what}: token refused after a refresh", status=401)

    @staticmethod
    def _read(response: requests.Response) -> etree._Element | None:
        """The parsed envelope, or None when the answer is not a SOAP 1.1 envelope."""
        try:
            root = parse_xml(response.content)
        except etree.XMLSyntaxError:
            return None
        return root if root.tag == _q(SOAP_ENV, "Envelope") else None

    @staticmethod
    def _raise_for(
        response: requests.Response, root: etree._Element | None, fault: Fault | None, what: str
    ) -> None:
        status = response.status_code
        if fault is not None:
            detail = f"{what}: HTTP {status}: SOAP fault {fault.code}: {mask_emails(fault.message)[:300]}"
            if fault.throttled:
                raise Throttled(detail, retry_after=THROTTLE_BACKOFF_SECONDS, status=status)
            if fault.code == "Client":  # the request itself is wrong
                raise PermanentError(detail, status=status)
            raise RetryableError(detail, status=status)
        raise_for_status(response, what, default_retry_after=THROTTLE_BACKOFF_SECONDS)
        if root is None:
            # a 2xx we cannot read (a proxy's page, a cut-off body): the install retrieves
            # before it creates, so sending again is safe; the task bounds the retries
            raise RetryableError(f"{what}: HTTP {status}: the answer is not a SOAP envelope")
