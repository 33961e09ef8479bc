"""The SOAP simulator answers as Salesforce documents: Results with StatusCode, faults with 500."""

from __future__ import annotations

import pytest
from lxml import etree

from pipeline.clients.soap import (
    PARTNER_API,
    SOAP_ENV,
    AndFilter,
    SimpleFilter,
    SoapObject,
    change_request,
    envelope,
    retrieve_request,
)
from pipeline.sandbox import sfmc
from pipeline.sandbox.sfmc_soap import DUPLICATE_DE_CODE, ROOT_FOLDER_ID

NS = {"s": SOAP_ENV, "p": PARTNER_API}
PK = {"Name": "Id", "MaxLength": 36, "IsRequired": True, "IsPrimaryKey": True, "FieldType": "Text"}


@pytest.fixture
def sim():
    return sfmc.SfmcSimulator()


@pytest.fixture
def http(sim):
    return sim.app.test_client()


@pytest.fixture
def token(http):
    body = {
        "grant_type": "client_credentials",
        "client_id": sfmc.DEFAULT_CLIENT_ID,
        "client_secret": sfmc.DEFAULT_CLIENT_SECRET,
        "account_id": "100000001",
    }
    return http.post("/v2/token", json=body).get_json()["access_token"]


def call(http, action: str, element, token: str, status: int = 200):
    response = http.post(
        "/Service.asmx",
        data=envelope(token, element),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action},
    )
    assert response.status_code == status, response.data
    assert response.content_type.startswith("text/xml")
    return etree.fromstring(response.data)


def results(root) -> list[dict[str, str]]:
    return [
        {etree.QName(child).localname: child.text or "" for child in r}
        for r in root.findall("s:Body/*/p:Results", NS)
    ]


def overall(root) -> str:
    return root.findtext("s:Body/*/p:OverallStatus", namespaces=NS)


def create(http, token, *objects: SoapObject):
    root = call(http, "Create", change_request("Create", objects), token)
    return results(root), overall(root)


def de(key: str, *fields: dict, **extra) -> SoapObject:
    return SoapObject(
        "DataExtension", {"CustomerKey": key, "Name": key, **extra, "Fields": {"Field": list(fields)}}
    )


def fault_of(root) -> tuple[str, str]:
    fault = root.find("s:Body/s:Fault", NS)
    return fault.findtext("faultcode"), fault.findtext("faultstring")


def test_the_data_extensions_root_exists_from_the_start(http, token):
    root = call(
        http,
        "Retrieve",
        retrieve_request(
            "DataFolder",
            ["ID", "CustomerKey", "Name"],
            AndFilter(SimpleFilter("ContentType", "dataextension"), SimpleFilter("ParentFolder.ID", "0")),
        ),
        token,
    )
    assert overall(root) == "OK"
    assert results(root) == [
        {"ID": str(ROOT_FOLDER_ID), "CustomerKey": "dataextension_default", "Name": "Data Extensions"}
    ]


def test_a_folder_and_a_sendable_de_are_created_kept_and_retrieved(http, token, sim):
    made, status = create(
        http,
        token,
        SoapObject(
            "DataFolder",
            {
                "CustomerKey": "f1",
                "ParentFolder": {"ID": ROOT_FOLDER_ID},
                "Name": "Rokt",
                "ContentType": "dataextension",
            },
        ),
    )
    assert status == "OK" and made[0]["StatusCode"] == "OK"
    folder_id = int(made[0]["NewID"])
    sendable = {"Name": "Sub", "MaxLength": 254, "FieldType": "Text"}
    made, status = create(
        http,
        token,
        de(
            "Subs",
            PK,
            sendable,
            IsSendable=True,
            SendableDataExtensionField={"Name": "Sub"},
            SendableSubscriberField={"Name": "Subscriber Key"},
            CategoryID=folder_id,
        ),
    )
    assert status == "OK" and made[0]["StatusCode"] == "OK" and made[0]["NewObjectID"]
    root = call(
        http,
        "Retrieve",
        retrieve_request(
            "DataExtension",
            ["CustomerKey", "CategoryID", "SendableSubscriberField.Name"],
            SimpleFilter("CustomerKey", "Subs"),
        ),
        token,
    )
    found = root.find("s:Body/p:RetrieveResponseMsg/p:Results", NS)
    assert found.findtext("p:SendableSubscriberField/p:Name", namespaces=NS) == "_SubscriberKey"
    assert found.findtext("p:CategoryID", namespaces=NS) == str(folder_id)
    fields = call(
        http,
        "Retrieve",
        retrieve_request(
            "DataExtensionField",
            ["Name", "FieldType", "IsPrimaryKey"],
            SimpleFilter("DataExtension.CustomerKey", "Subs"),
        ),
        token,
    )
    assert results(fields) == [
        {"Name": "Id", "FieldType": "Text", "IsPrimaryKey": "true"},
        {"Name": "Sub", "FieldType": "Text", "IsPrimaryKey": "false"},
    ]
    held = sim.soap.state()
    assert {
        "id": folder_id,
        "name": "Rokt",
        "customer_key": "f1",
        "content_type": "dataextension",
        "parent_id": 2,
    } in held["folders"]
    definition = held["data_extension_definitions"]["Subs"]
    assert definition["category_id"] == folder_id and definition["sendable_field"] == "Sub"
    assert definition["fields"][0]["is_primary_key"] and definition["fields"][1]["max_length"] == 254


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"Name": "T", "FieldType": "Text"}, "Text needs a MaxLength"),
        ({"Name": "T", "FieldType": "Text", "MaxLength": 4001}, "Text needs a MaxLength"),
        ({"Name": "K", "FieldType": "Text", "MaxLength": 5, "IsPrimaryKey": True}, "must be required"),
        (
            {"Name": "D", "FieldType": "Date", "IsPrimaryKey": True, "IsRequired": True},
            "Date field cannot be a primary key",
        ),
        ({"Name": "X", "FieldType": "Blob"}, "unknown FieldType"),
        ({"Name": "N", "FieldType": "Decimal", "MaxLength": 10}, "Decimal needs"),
    ],
)
def test_field_rules_give_an_error_result(http, token, sim, field, message):
    made, status = create(http, token, de("Bad", PK, field))
    assert status == "Error" and made[0]["StatusCode"] == "Error"
    assert message in made[0]["StatusMessage"] and made[0]["ErrorCode"]
    assert "Bad" not in sim.soap.definitions


def test_key_length_duplicates_and_the_sendable_name_are_checked(http, token):
    made, status = create(
        http,
        token,
        de("k" * 37, PK),
        de("Once", PK),
        de("Once", PK),
        de(
            "Send",
            PK,
            IsSendable=True,
            SendableDataExtensionField={"Name": "Id"},
            SendableSubscriberField={"Name": "_SubscriberKey"},
        ),
    )
    assert status == "Has Errors"
    assert [r["StatusCode"] for r in made] == ["Error", "OK", "Error", "Error"]
    assert "longer than 36" in made[0]["StatusMessage"]
    assert made[2]["ErrorCode"] == DUPLICATE_DE_CODE and "add-only" in made[2]["StatusMessage"]
    assert "SendableSubscriberField" in made[3]["StatusMessage"]


def test_update_adds_fields_and_refuses_an_existing_one_or_a_new_primary_key(http, token, sim):
    create(http, token, de("D1", PK))
    extra = {"Name": "More", "MaxLength": 20, "FieldType": "Text"}
    root = call(http, "Update", change_request("Update", [de("D1", extra)]), token)
    assert overall(root) == "OK" and results(root)[0]["StatusCode"] == "OK"
    assert [f["name"] for f in sim.soap.definitions["D1"]["fields"]] == ["Id", "More"]
    for field, message in ((extra, "already exists"), ({**PK, "Name": "Id2"}, "primary key cannot be added")):
        root = call(http, "Update", change_request("Update", [de("D1", field)]), token)
        assert overall(root) == "Error" and message in results(root)[0]["StatusMessage"]
    root = call(http, "Update", change_request("Update", [de("Nope", extra)]), token)
    assert "not found" in results(root)[0]["StatusMessage"]


def test_an_unknown_retrieve_property_is_an_error_status(http, token):
    root = call(http, "Retrieve", retrieve_request("DataExtension", ["Bogus"]), token)
    assert overall(root).startswith("Error: The Request Property(s) Bogus")


def test_an_unknown_or_expired_token_is_a_security_fault(http, token, sim):
    root = call(http, "Retrieve", retrieve_request("DataFolder", ["ID"]), "not-a-token", status=500)
    assert fault_of(root) == ("soap:Security", "Login Failed")
    sim.tokens[token] = 0  # expired
    root = call(http, "Retrieve", retrieve_request("DataFolder", ["ID"]), token, status=500)
    assert fault_of(root)[1] == "Login Failed"


def test_the_fault_knob_throttles_then_errors_then_lets_calls_through(http, token):
    assert (
        http.post("/__sandbox__/soap-faults", json={"throttle_next": 2, "error_next": 1}).status_code == 200
    )
    request = retrieve_request("DataFolder", ["ID"])
    for _ in range(2):
        assert "throttled" in fault_of(call(http, "Retrieve", request, token, status=500))[1]
    code, message = fault_of(call(http, "Retrieve", request, token, status=500))
    assert code == "soap:Server" and "throttled" not in message
    assert overall(call(http, "Retrieve", request, token)) == "OK"
    assert http.post("/__sandbox__/soap-faults", json={"throttle_next": -1}).status_code == 400
    assert http.post("/__sandbox__/soap-faults", json={"bogus": 1}).status_code == 400


def test_the_simulators_rate_limit_and_injected_faults_answer_500(http, token):
    request = retrieve_request("DataFolder", ["ID"])
    http.post("/__sandbox__/faults", json={"rate_limit": 1})
    call(http, "Retrieve", request, token)
    assert "throttled" in fault_of(call(http, "Retrieve", request, token, status=500))[1]
    http.post("/__sandbox__/faults", json={"rate_limit": 0, "fail_next": 1})
    assert "injected" in fault_of(call(http, "Retrieve", request, token, status=500))[1]
    assert overall(call(http, "Retrieve", request, token)) == "OK"


def test_malformed_requests_are_client_faults(http, token):
    bad = [
        (b"not xml", "Create"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "Create"),
        (envelope(token, retrieve_request("DataFolder", ["ID"])), ""),
        (envelope(token, retrieve_request("DataFolder", ["ID"])), "Create"),
    ]
    for body, action in bad:
        response = http.post(
            "/Service.asmx", data=body, headers={"Content-Type": "text/xml", "SOAPAction": action}
        )
        assert response.status_code == 500
        assert fault_of(etree.fromstring(response.data))[0] == "soap:Client"


def test_reset_forgets_what_was_created_but_keeps_the_root(http, token, sim):
    create(http, token, de("D1", PK))
    http.post("/__sandbox__/reset")
    held = http.get("/__sandbox__/state").get_json()
    assert held["data_extension_definitions"] == {}
    assert [f["customer_key"] for f in held["folders"]] == ["dataextension_default"]
