"""SFMC SOAP simulator (`POST /Service.asmx`, SOAP 1.1): Create/Retrieve/Update of DataFolder and
DataExtension, Retrieve of DataExtensionField, as Salesforce documents them
(docs/vendors/sfmc-app.md §C).

- The token is a REST token of the simulator in `<fueloauth xmlns="http://exacttarget.com">`;
  an unknown or expired one is a `Security` fault "Login Failed" (HTTP 500).
- Throttling is HTTP 500 with a Server fault naming the limited rate ("Rate Limiting"), from the
  simulator's rate limiter (account "soap") or `POST /__sandbox__/soap-faults {"throttle_next": n}`;
  `{"error_next": n}` and the simulator's injected faults answer a plain Server fault (500).
- Every object gets a `Results` entry with `StatusCode` OK or Error, `StatusMessage`, `ErrorCode`
  on errors, `NewID` (folders) / `NewObjectID`; `OverallStatus` OK, Error or Has Errors.
- Creating a data extension checks what Salesforce's "Creating a Data Extension" page lists:
  external key ≤ 36 characters and unique, primary keys also required, no Date primary key,
  Text with MaxLength 1..4000, Decimal with precision and scale, a known FieldType, the folder
  exists, and a sendable DE relates a field of its own to "Subscriber Key" (retrieved as
  "_SubscriberKey").
- The "Data Extensions" root folder (ID 2, `dataextension_default`, parent 0) always exists.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request
from lxml import etree

if TYPE_CHECKING:
    from pipeline.sandbox.sfmc import SfmcSimulator

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER_API = "http://exacttarget.com/wsdl/partnerAPI"
FUEL_NS = "http://exacttarget.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ROOT_FOLDER_ID = 2
ROOT_FOLDER_KEY = "dataextension_default"
FIELD_TYPES = ("Text", "Number", "Date", "Boolean", "EmailAddress", "Phone", "Decimal", "Locale")
FIXED_LENGTHS = {"EmailAddress": 254, "Phone": 50, "Locale": 5}
MAX_KEY_LENGTH = 36
MAX_TEXT_LENGTH = 4000
SENDABLE_SUBSCRIBER_FIELDS = {"Subscriber Key": "_SubscriberKey", "Email Address": "_EmailAddress"}
THROTTLE_MESSAGE = "Rate limit exceeded: requests are throttled to a limited rate; try again later"
# StatusMessage SFMC users report for a Create of an external key that exists (code unconfirmed)
DUPLICATE_DE_MESSAGE = (
    "Updating an existing Data Extension definition is not allowed when doing an add-only operation."
)
DUPLICATE_DE_CODE = "310007"

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, remove_comments=True
)

FOLDER_PROPERTIES = (
    "ID",
    "ObjectID",
    "CustomerKey",
    "Name",
    "Description",
    "ContentType",
    "ParentFolder.ID",
    "ParentFolder.CustomerKey",
    "IsActive",
    "IsEditable",
    "AllowChildren",
)
DE_PROPERTIES = (
    "ObjectID",
    "CustomerKey",
    "Name",
    "Description",
    "CategoryID",
    "IsSendable",
    "IsTestable",
    "SendableDataExtensionField.Name",
    "SendableSubscriberField.Name",
)
FIELD_PROPERTIES = (
    "ObjectID",
    "CustomerKey",
    "Name",
    "FieldType",
    "MaxLength",
    "Scale",
    "IsPrimaryKey",
    "IsRequired",
    "DefaultValue",
    "Ordinal",
    "DataExtension.CustomerKey",
)
RETRIEVABLE = {
    "DataFolder": FOLDER_PROPERTIES,
    "DataExtension": DE_PROPERTIES,
    "DataExtensionField": FIELD_PROPERTIES,
}


class SoapFault(Exception):
    """Answered as a SOAP fault with HTTP 500 (SFMC answers every fault so)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ObjectError(Exception):
    """One object of a Create/Update refused: an Error result, the others go on."""

    def __init__(self, message: str, error_code: str = "2") -> None:
        super().__init__(message)
        self.message, self.error_code = message, error_code


def _q(name: str, ns: str = PARTNER_API) -> str:
    return f"{{{ns}}}{name}"


def _tree(element: etree._Element) -> Any:
    """An element as text (leaf) or {name: value or [values] when repeated}."""
    if len(element) == 0:
        return (element.text or "").strip()
    values: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        value = _tree(child)
        if name in values:
            if not isinstance(values[name], list):
                values[name] = [values[name]]
            values[name].append(value)
        else:
            values[name] = value
    return values


def _as_list(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]


def _bool(value: Any, default: bool = False) -> bool:
    if value in (None, ""):
        return default
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ObjectError(f"{value!r} is not a boolean")
    return text in ("true", "1")


def _int(value: Any, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError as exc:
        raise ObjectError(f"{what}: {value!r} is not a number") from exc


def _fields_of(values: dict[str, Any]) -> list[Any]:
    fields = values.get("Fields")
    return _as_list(fields.get("Field")) if isinstance(fields, dict) else []


def _text(value: bool | int | str | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class SoapService:
    def __init__(self, sim: SfmcSimulator) -> None:
        self.sim = sim
        self.reset()

    def mount(self, app: Flask) -> None:
        """Register the SOAP route and its fault knob on the simulator's app."""
        app.add_url_rule("/Service.asmx", "soap", self.service, methods=["POST"])
        app.add_url_rule("/__sandbox__/soap-faults", "soap_faults", self.set_faults, methods=["POST"])

    def reset(self) -> None:
        self.ids = itertools.count(ROOT_FOLDER_ID + 1)
        self.folders: dict[int, dict[str, Any]] = {
            ROOT_FOLDER_ID: {
                "ID": ROOT_FOLDER_ID,
                "ObjectID": str(uuid.uuid4()),
                "CustomerKey": ROOT_FOLDER_KEY,
                "Name": "Data Extensions",
                "Description": "",
                "ContentType": "dataextension",
                "ParentID": 0,
                "IsActive": True,
                "IsEditable": False,
                "AllowChildren": True,
            }
        }
        self.definitions: dict[str, dict[str, Any]] = {}
        self.throttle_next = 0
        self.error_next = 0
        self.calls: dict[str, int] = {}

    def state(self) -> dict[str, Any]:
        folders = [
            {
                "id": f["ID"],
                "name": f["Name"],
                "customer_key": f["CustomerKey"],
                "content_type": f["ContentType"],
                "parent_id": f["ParentID"],
            }
            for f in self.folders.values()
        ]
        definitions = {
            key: {
                "name": d["name"],
                "category_id": d["category_id"],
                "is_sendable": d["is_sendable"],
                "sendable_field": d["sendable_field"],
                "sendable_subscriber_field": d["sendable_subscriber_field"],
                "fields": [dict(f) for f in d["fields"]],
            }
            for key, d in self.definitions.items()
        }
        return {"folders": folders, "data_extension_definitions": definitions, "soap_calls": dict(self.calls)}

    def set_faults(self):
        """`{"throttle_next": n, "error_next": n}`: the next n SOAP calls answer 500."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or set(body) - {"throttle_next", "error_next"}:
            return jsonify(error="invalid_body", message="JSON object {throttle_next?, error_next?}"), 400
        for name in ("throttle_next", "error_next"):
            value = body.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return jsonify(error="invalid_body", message=f"{name} must be a whole number ≥ 0"), 400
        with self.sim.lock:
            self.throttle_next = body.get("throttle_next", self.throttle_next)
            self.error_next = body.get("error_next", self.error_next)
        return jsonify(throttle_next=self.throttle_next, error_next=self.error_next)

    # --- the endpoint ---------------------------------------------------------------------

    def service(self) -> Response:
        try:
            action, token, operation = self._read_request()
            self._guard(token)
            with self.sim.lock:
                self.calls[action] = self.calls.get(action, 0) + 1
                answer = {"Create": self._create, "Retrieve": self._retrieve, "Update": self._update}[action](
                    operation
                )
        except SoapFault as fault:
            return self._fault(fault)
        return self._respond(answer)

    def _read_request(self) -> tuple[str, str, etree._Element]:
        try:
            root = etree.fromstring(request.get_data(), _PARSER)
        except etree.XMLSyntaxError as exc:
            raise SoapFault("Client", f"The request is not well-formed XML: {exc}") from exc
        if root.getroottree().docinfo.doctype:
            raise SoapFault("Client", "A DOCTYPE is not allowed in a SOAP message")
        if root.tag != _q("Envelope", SOAP_ENV):
            raise SoapFault("VersionMismatch", "Expected a SOAP 1.1 Envelope")
        header, body = root.find(_q("Header", SOAP_ENV)), root.find(_q("Body", SOAP_ENV))
        token_element = header.find(_q("fueloauth", FUEL_NS)) if header is not None else None
        token = (token_element.text or "").strip() if token_element is not None else ""
        if body is None or len(body) != 1:
            raise SoapFault("Client", "The Body must hold exactly one request")
        operation = body[0]
        action = request.headers.get("SOAPAction", "").strip().strip('"')
        expected = {"Create": "CreateRequest", "Retrieve": "RetrieveRequestMsg", "Update": "UpdateRequest"}
        if action not in expected:
            raise SoapFault("Client", "Unable to determine the SOAP action: send a SOAPAction header")
        if operation.tag != _q(expected[action]):
            raise SoapFault("Client", f"SOAPAction {action} does not match the body's {operation.tag}")
        return action, token, operation

    def _guard(self, token: str) -> None:
        """Auth, then the throttling and error knobs, as the REST routes do."""
        with self.sim.lock:
            expires = self.sim.tokens.get(token)
            if not token or expires is None or expires <= time.monotonic():
                self.sim.unauthorized += 1
                raise SoapFault("Security", "Login Failed")
            if self.throttle_next:
                self.throttle_next -= 1
                self.sim.counters.throttled += 1
                raise SoapFault("Server", THROTTLE_MESSAGE)
            if self.error_next:
                self.error_next -= 1
                raise SoapFault("Server", "UnexpectedError: the server cannot process the request now")
        if not self.sim.admit("soap"):
            raise SoapFault("Server", THROTTLE_MESSAGE)
        if self.sim.inject():
            raise SoapFault("Server", "UnexpectedError: injected fault")

    # --- Retrieve -------------------------------------------------------------------------

    def _retrieve(self, operation: etree._Element) -> etree._Element:
        request_element = operation.find(_q("RetrieveRequest"))
        spec = _tree(request_element) if request_element is not None else {}
        spec = spec if isinstance(spec, dict) else {}
        object_type = str(spec.get("ObjectType", ""))
        answer = etree.Element(_q("RetrieveResponseMsg"), nsmap={None: PARTNER_API, "xsi": XSI})
        known = RETRIEVABLE.get(object_type)
        properties = [str(p) for p in _as_list(spec.get("Properties"))]
        if known is None:
            return self._retrieve_status(answer, f"Error: Unable to retrieve object type {object_type!r}")
        unknown = [p for p in properties if p not in known]
        if unknown or not properties:
            return self._retrieve_status(
                answer,
                f"Error: The Request Property(s) {', '.join(unknown) or '(none)'} do not match with the "
                f"fields of {object_type} retrieve",
            )
        filter_element = operation.find(f"{_q('RetrieveRequest')}/{_q('Filter')}")
        for row in self._objects(object_type):
            if filter_element is None or self._matches(filter_element, row):
                results = etree.SubElement(answer, _q("Results"))
                results.set(_q("type", XSI), object_type)
                for name in properties:
                    self._put(results, name, row.get(name))
        return self._retrieve_status(answer, "OK")

    @staticmethod
    def _retrieve_status(answer: etree._Element, status: str) -> etree._Element:
        etree.SubElement(answer, _q("OverallStatus")).text = status
        etree.SubElement(answer, _q("RequestID")).text = str(uuid.uuid4())
        return answer

    def _objects(self, object_type: str) -> list[dict[str, Any]]:
        if object_type == "DataFolder":
            rows = []
            for folder in self.folders.values():
                parent = self.folders.get(folder["ParentID"])
                rows.append(
                    {
                        **{k: v for k, v in folder.items() if k != "ParentID"},
                        "ParentFolder.ID": folder["ParentID"],
                        "ParentFolder.CustomerKey": parent["CustomerKey"] if parent else "",
                    }
                )
            return rows
        if object_type == "DataExtension":
            return [
                {
                    "ObjectID": d["object_id"],
                    "CustomerKey": key,
                    "Name": d["name"],
                    "Description": d["description"],
                    "CategoryID": d["category_id"],
                    "IsSendable": d["is_sendable"],
                    "IsTestable": d["is_testable"],
                    "SendableDataExtensionField.Name": d["sendable_field"] or None,
                    "SendableSubscriberField.Name": d["sendable_subscriber_field"] or None,
                }
                for key, d in self.definitions.items()
            ]
        rows = []
        for key, d in self.definitions.items():
            for ordinal, f in enumerate(d["fields"]):
                rows.append(
                    {
                        "ObjectID": f["object_id"],
                        "CustomerKey": f"[{key}].[{f['name']}]",
                        "Name": f["name"],
                        "FieldType": f["type"],
                        "MaxLength": f["max_length"],
                        "Scale": f["scale"],
                        "IsPrimaryKey": f["is_primary_key"],
                        "IsRequired": f["is_required"],
                        "DefaultValue": f["default_value"],
                        "Ordinal": ordinal,
                        "DataExtension.CustomerKey": key,
                    }
                )
        return rows

    def _matches(self, part: etree._Element, row: dict[str, Any]) -> bool:
        kind = part.get(_q("type", XSI), "")
        if kind.endswith("ComplexFilterPart"):
            left, right = part.find(_q("LeftOperand")), part.find(_q("RightOperand"))
            operator = (part.findtext(_q("LogicalOperator")) or "").strip()
            if left is None or right is None or operator not in ("AND", "OR"):
                raise SoapFault(
                    "Client", "ComplexFilterPart needs LeftOperand, LogicalOperator, RightOperand"
                )
            if operator == "AND":
                return self._matches(left, row) and self._matches(right, row)
            return self._matches(left, row) or self._matches(right, row)
        if not kind.endswith("SimpleFilterPart"):
            raise SoapFault("Client", f"Unknown filter type {kind!r}")
        name = (part.findtext(_q("Property")) or "").strip()
        operator = (part.findtext(_q("SimpleOperator")) or "").strip()
        values = [(v.text or "").strip() for v in part.findall(_q("Value"))]
        if name not in row:
            raise SoapFault("Client", f"Unknown filter property {name!r}")
        actual = _text(row[name])
        if operator == "equals":
            return actual == (values[0] if values else "")
        if operator == "notEquals":
            return actual != (values[0] if values else "")
        if operator == "IN":
            return actual in values
        raise SoapFault("Client", f"Unsupported SimpleOperator {operator!r}")

    @staticmethod
    def _put(parent: etree._Element, dotted: str, value: Any) -> None:
        head, _, rest = dotted.partition(".")
        child = parent.find(_q(head))
        if child is None:
            child = etree.SubElement(parent, _q(head))
        if rest:
            SoapService._put(child, rest, value)
        elif value is None:
            child.set(_q("nil", XSI), "true")
        else:
            child.text = _text(value)

    # --- Create / Update ------------------------------------------------------------------

    def _create(self, operation: etree._Element) -> etree._Element:
        return self._change("Create", operation)

    def _update(self, operation: etree._Element) -> etree._Element:
        return self._change("Update", operation)

    def _change(self, action: str, operation: etree._Element) -> etree._Element:
        answer = etree.Element(_q(f"{action}Response"), nsmap={None: PARTNER_API, "xsi": XSI})
        statuses = []
        for ordinal, element in enumerate(operation.findall(_q("Objects"))):
            object_type = element.get(_q("type", XSI), "")
            values = _tree(element)
            values = values if isinstance(values, dict) else {}
            results = etree.SubElement(answer, _q("Results"))
            try:
                handler = {
                    ("Create", "DataFolder"): self._create_folder,
                    ("Create", "DataExtension"): self._create_de,
                    ("Update", "DataExtension"): self._update_de,
                    ("Update", "DataFolder"): self._update_folder,
                }.get((action, object_type))
                if handler is None:
                    raise ObjectError(f"{action} of {object_type or 'an untyped object'} is not supported")
                message, new_id, object_id = handler(values)
            except ObjectError as error:
                statuses.append("Error")
                etree.SubElement(results, _q("StatusCode")).text = "Error"
                etree.SubElement(results, _q("StatusMessage")).text = error.message
                etree.SubElement(results, _q("OrdinalID")).text = str(ordinal)
                etree.SubElement(results, _q("ErrorCode")).text = error.error_code
                continue
            statuses.append("OK")
            etree.SubElement(results, _q("StatusCode")).text = "OK"
            etree.SubElement(results, _q("StatusMessage")).text = message
            etree.SubElement(results, _q("OrdinalID")).text = str(ordinal)
            etree.SubElement(results, _q("NewID")).text = str(new_id)
            if object_id:
                etree.SubElement(results, _q("NewObjectID")).text = object_id
        etree.SubElement(answer, _q("RequestID")).text = str(uuid.uuid4())
        if statuses and all(s == "OK" for s in statuses):
            overall = "OK"
        elif any(s == "OK" for s in statuses):
            overall = "Has Errors"
        else:
            overall = "Error"
        etree.SubElement(answer, _q("OverallStatus")).text = overall
        return answer

    def _create_folder(self, values: dict[str, Any]) -> tuple[str, int, str]:
        name = str(values.get("Name") or "").strip()
        key = str(values.get("CustomerKey") or "").strip() or str(uuid.uuid4())
        content_type = str(values.get("ContentType") or "").strip()
        parent_values = values.get("ParentFolder")
        parent_id = _int(
            parent_values.get("ID") if isinstance(parent_values, dict) else None, "ParentFolder.ID"
        )
        if not name:
            raise ObjectError("Name is required")
        if not content_type:
            raise ObjectError("ContentType is required")
        parent = self.folders.get(parent_id or -1)
        if parent is None:
            raise ObjectError(f"Parent folder {parent_id} does not exist")
        if parent["ContentType"] != content_type:
            raise ObjectError(
                f"ContentType {content_type} does not match the parent's {parent['ContentType']}"
            )
        if any(f["CustomerKey"] == key for f in self.folders.values()):
            raise ObjectError(f"A folder with CustomerKey {key} already exists", "2")
        if any(f["Name"] == name and f["ParentID"] == parent_id for f in self.folders.values()):
            raise ObjectError(f"A folder named {name} already exists in that folder", "2")
        folder_id = next(self.ids)
        self.folders[folder_id] = {
            "ID": folder_id,
            "ObjectID": str(uuid.uuid4()),
            "CustomerKey": key,
            "Name": name,
            "Description": str(values.get("Description") or ""),
            "ContentType": content_type,
            "ParentID": parent_id,
            "IsActive": _bool(values.get("IsActive"), True),
            "IsEditable": _bool(values.get("IsEditable")),
            "AllowChildren": _bool(values.get("AllowChildren")),
        }
        return "Folder created successfully.", folder_id, self.folders[folder_id]["ObjectID"]

    def _update_folder(self, values: dict[str, Any]) -> tuple[str, int, str]:
        folder_id = _int(values.get("ID"), "ID")
        key = str(values.get("CustomerKey") or "")
        folder = self.folders.get(folder_id or -1) or next(
            (f for f in self.folders.values() if key and f["CustomerKey"] == key), None
        )
        if folder is None:
            raise ObjectError("Folder not found")
        for name in ("Name", "Description"):
            if values.get(name):
                folder[name] = str(values[name])
        return "Folder updated successfully.", folder["ID"], folder["ObjectID"]

    def _create_de(self, values: dict[str, Any]) -> tuple[str, int, str]:
        key = str(values.get("CustomerKey") or "").strip() or str(uuid.uuid4())
        name = str(values.get("Name") or "").strip()
        if not name:
            raise ObjectError("Name is required")
        if len(key) > MAX_KEY_LENGTH:
            raise ObjectError(f"CustomerKey {key} is longer than {MAX_KEY_LENGTH} characters")
        if key in self.definitions:
            raise ObjectError(DUPLICATE_DE_MESSAGE, DUPLICATE_DE_CODE)
        category = _int(values.get("CategoryID"), "CategoryID")
        if category is not None:
            folder = self.folders.get(category)
            if folder is None or folder["ContentType"] != "dataextension":
                raise ObjectError(f"CategoryID {category} is not a data extension folder")
        fields_in = _fields_of(values)
        if not fields_in:
            raise ObjectError("A data extension needs at least one field")
        fields: list[dict[str, Any]] = []
        for raw in fields_in:
            fields.append(self._field(raw, {f["name"] for f in fields}, adding=False))
        is_sendable = _bool(values.get("IsSendable"))
        sendable_field = sendable_subscriber = ""
        if is_sendable:
            field_of = values.get("SendableDataExtensionField")
            subscriber_of = values.get("SendableSubscriberField")
            sendable_field = str(field_of.get("Name") or "") if isinstance(field_of, dict) else ""
            subscriber_name = str(subscriber_of.get("Name") or "") if isinstance(subscriber_of, dict) else ""
            if sendable_field not in {f["name"] for f in fields}:
                raise ObjectError(f"SendableDataExtensionField {sendable_field!r} is not a field of the DE")
            if subscriber_name not in SENDABLE_SUBSCRIBER_FIELDS:
                raise ObjectError(
                    f"SendableSubscriberField {subscriber_name!r} is not one of "
                    f"{', '.join(SENDABLE_SUBSCRIBER_FIELDS)}"
                )
            sendable_subscriber = SENDABLE_SUBSCRIBER_FIELDS[subscriber_name]
        object_id = str(uuid.uuid4())
        self.definitions[key] = {
            "object_id": object_id,
            "name": name,
            "description": str(values.get("Description") or ""),
            "category_id": category,
            "is_sendable": is_sendable,
            "is_testable": _bool(values.get("IsTestable")),
            "sendable_field": sendable_field,
            "sendable_subscriber_field": sendable_subscriber,
            "fields": fields,
        }
        return "Data Extension created.", 0, object_id

    def _update_de(self, values: dict[str, Any]) -> tuple[str, int, str]:
        key = str(values.get("CustomerKey") or "").strip()
        definition = self.definitions.get(key)
        if definition is None:
            raise ObjectError(f"Data extension {key!r} not found")
        fields_in = _fields_of(values)
        names = {f["name"] for f in definition["fields"]}
        added = []
        for raw in fields_in:
            field = self._field(raw, names | {f["name"] for f in added}, adding=True)
            added.append(field)
        definition["fields"].extend(added)  # all or nothing: validated above
        for name, attribute in (("Name", "name"), ("Description", "description")):
            if values.get(name):
                definition[attribute] = str(values[name])
        return "Updated DataExtension", 0, definition["object_id"]

    @staticmethod
    def _field(raw: Any, taken: set[str], *, adding: bool) -> dict[str, Any]:
        """One field as stored, or ObjectError saying why SFMC would refuse it."""
        if not isinstance(raw, dict):
            raise ObjectError("A Field needs Name and FieldType")
        name = str(raw.get("Name") or "").strip()
        field_type = str(raw.get("FieldType") or "Text").strip()
        if not name:
            raise ObjectError("A Field needs a Name")
        if name in taken:
            raise ObjectError(f"Field {name} already exists in the data extension")
        if field_type not in FIELD_TYPES:
            raise ObjectError(f"Field {name}: unknown FieldType {field_type!r}")
        max_length = _int(raw.get("MaxLength"), f"Field {name} MaxLength")
        scale = _int(raw.get("Scale"), f"Field {name} Scale")
        primary = _bool(raw.get("IsPrimaryKey"))
        required = _bool(raw.get("IsRequired"))
        if field_type == "Text" and not (max_length and 0 < max_length <= MAX_TEXT_LENGTH):
            raise ObjectError(f"Field {name}: Text needs a MaxLength from 1 to {MAX_TEXT_LENGTH}")
        if field_type in FIXED_LENGTHS:
            limit = FIXED_LENGTHS[field_type]
            if max_length is not None and not 0 < max_length <= limit:
                raise ObjectError(f"Field {name}: {field_type} MaxLength is at most {limit}")
            max_length = max_length or limit
        if field_type == "Decimal" and (max_length is None or scale is None or not 0 < max_length <= 38):
            raise ObjectError(f"Field {name}: Decimal needs MaxLength (precision, at most 38) and Scale")
        if primary and field_type == "Date":
            raise ObjectError(f"Field {name}: a Date field cannot be a primary key")
        if primary and not required:
            raise ObjectError(f"Field {name}: a primary key field must be required (IsRequired)")
        if adding and primary:
            raise ObjectError(f"Field {name}: a primary key cannot be added to an existing data extension")
        default = raw.get("DefaultValue")
        if field_type == "Boolean" and default not in (None, ""):
            _bool(default)
        return {
            "object_id": str(uuid.uuid4()),
            "name": name,
            "type": field_type,
            "max_length": max_length,
            "scale": scale,
            "is_primary_key": primary,
            "is_required": required,
            "default_value": None if default in (None, "") else str(default),
        }

    # --- answers --------------------------------------------------------------------------

    @staticmethod
    def _envelope(body_child: etree._Element) -> etree._Element:
        root = etree.Element(_q("Envelope", SOAP_ENV), nsmap={"soap": SOAP_ENV, "xsi": XSI})
        etree.SubElement(root, _q("Header", SOAP_ENV))
        etree.SubElement(root, _q("Body", SOAP_ENV)).append(body_child)
        return root

    def _respond(self, answer: etree._Element, status: int = 200) -> Response:
        body = etree.tostring(self._envelope(answer), xml_declaration=True, encoding="utf-8")
        return Response(body, status=status, content_type="text/xml; charset=utf-8")

    def _fault(self, fault: SoapFault) -> Response:
        element = etree.Element(_q("Fault", SOAP_ENV))
        etree.SubElement(element, "faultcode").text = f"soap:{fault.code}"
        etree.SubElement(element, "faultstring").text = fault.message
        return self._respond(element, status=500)
