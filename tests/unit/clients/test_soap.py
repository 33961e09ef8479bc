"""The SOAP client at the HTTP layer: the XML it sends, how it reads Results, faults and junk."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from lxml import etree

from pipeline.clients.errors import PermanentError, RetryableError, Throttled, Unauthorized, UnknownOutcome
from pipeline.clients.soap import (
    PARTNER_API,
    SOAP_ENV,
    AndFilter,
    SimpleFilter,
    SoapClient,
    SoapObject,
    parse_xml,
)
from pipeline.clients.tokens import SharedToken

SOAP_URL = "https://soap.sfmc.test/Service.asmx"
NS = {"s": SOAP_ENV, "p": PARTNER_API, "f": "http://exacttarget.com"}


@pytest.fixture
def tokens():
    issued = []

    def fetch():
        issued.append(f"token-{len(issued) + 1}")
        return {
            "access_token": issued[-1],
            "expires_in": 1000,
            "soap_instance_url": "https://soap.sfmc.test/",
        }

    return issued, fetch


@pytest.fixture
def client(fake_redis, tokens):
    _issued, fetch = tokens
    gated = []
    soap = SoapClient(SharedToken(fake_redis, "acme", "sfmc", fetch), (1, 2), gate=lambda: gated.append(1))
    soap.gated = gated
    return soap


def answer(body: str, status: int = 200) -> dict:
    text = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>{body}</soap:Body></soap:Envelope>'
    )
    return {"body": text, "status": status, "content_type": "text/xml"}


def created(*results: tuple[str, str], overall: str = "OK", action: str = "Create") -> dict:
    items = "".join(
        f"<Results><StatusCode>{code}</StatusCode><StatusMessage>{message}</StatusMessage>"
        f"{'<ErrorCode>310007</ErrorCode>' if code == 'Error' else '<NewID>7</NewID>'}</Results>"
        for code, message in results
    )
    return answer(
        f'<{action}Response xmlns="{PARTNER_API}">{items}<RequestID>r</RequestID>'
        f"<OverallStatus>{overall}</OverallStatus></{action}Response>"
    )


def fault(code: str, message: str) -> dict:
    return answer(
        f"<soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{message}</faultstring></soap:Fault>",
        status=500,
    )


def sent(call_index: int = 0) -> etree._Element:
    return etree.fromstring(responses.calls[call_index].request.body)


@responses.activate
def test_a_retrieve_sends_soap_1_1_with_the_token_and_a_filter_and_reads_nested_properties(client, tokens):
    responses.post(
        SOAP_URL,
        **answer(
            f'<RetrieveResponseMsg xmlns="{PARTNER_API}"><OverallStatus>OK</OverallStatus>'
            "<RequestID>r</RequestID>"
            '<Results xsi:type="DataExtension"><CustomerKey>Subs</CustomerKey>'
            "<SendableSubscriberField><Name>_SubscriberKey</Name></SendableSubscriberField>"
            '<CategoryID xsi:nil="true"/></Results></RetrieveResponseMsg>'
        ),
    )
    rows = client.retrieve(
        "DataFolder",
        ["ID", "Name"],
        AndFilter(SimpleFilter("ContentType", "dataextension"), SimpleFilter("ParentFolder.ID", "0")),
    )
    assert rows == [{"CustomerKey": "Subs", "SendableSubscriberField.Name": "_SubscriberKey"}]
    request = responses.calls[0].request
    assert request.headers["SOAPAction"] == "Retrieve"
    assert request.headers["Content-Type"].startswith("text/xml")
    xml = sent()
    assert xml.findtext("s:Header/f:fueloauth", namespaces=NS) == tokens[0][0]
    retrieve = xml.find("s:Body/p:RetrieveRequestMsg/p:RetrieveRequest", NS)
    assert retrieve.findtext("p:ObjectType", namespaces=NS) == "DataFolder"
    assert [p.text for p in retrieve.findall("p:Properties", NS)] == ["ID", "Name"]
    outer = retrieve.find("p:Filter", NS)
    assert outer.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "ComplexFilterPart"
    assert outer.findtext("p:LogicalOperator", namespaces=NS) == "AND"
    assert outer.findtext("p:RightOperand/p:Property", namespaces=NS) == "ParentFolder.ID"
    assert outer.findtext("p:RightOperand/p:Value", namespaces=NS) == "0"
    assert client.gated == [1]


@responses.activate
def test_values_are_escaped_by_lxml_not_concatenated(client):
    responses.post(SOAP_URL, **created(("OK", "Data Extension created.")))
    name = 'A & B <"x">'
    client.create([SoapObject("DataExtension", {"Name": name, "IsSendable": False, "Fields": {"Field": []}})])
    objects = sent().find("s:Body/p:CreateRequest/p:Objects", NS)
    assert objects.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "DataExtension"
    assert objects.findtext("p:Name", namespaces=NS) == name
    assert objects.findtext("p:IsSendable", namespaces=NS) == "false"
    assert responses.calls[0].request.headers["SOAPAction"] == "Create"


@responses.activate
def test_more_data_available_is_followed_with_a_continue_request(client):
    page = (
        '<RetrieveResponseMsg xmlns="{ns}"><OverallStatus>{status}</OverallStatus>'
        "<RequestID>req-1</RequestID>"
        "<Results><Name>{name}</Name></Results></RetrieveResponseMsg>"
    )
    responses.post(SOAP_URL, **answer(page.format(ns=PARTNER_API, status="MoreDataAvailable", name="a")))
    responses.post(SOAP_URL, **answer(page.format(ns=PARTNER_API, status="OK", name="b")))
    assert client.retrieve("DataExtensionField", ["Name"]) == [{"Name": "a"}, {"Name": "b"}]
    assert sent(1).findtext(
        "s:Body/p:RetrieveRequestMsg/p:RetrieveRequest/p:ContinueRequest", namespaces=NS
    ) == ("req-1")


@responses.activate
def test_every_result_is_checked_and_an_error_result_is_permanent_with_its_message(client):
    responses.post(
        SOAP_URL,
        **created(("OK", "created"), ("Error", "Updating an existing Data Extension"), overall="Has Errors"),
    )
    with pytest.raises(
        PermanentError, match=r"Error: Updating an existing Data Extension \(ErrorCode 310007\)"
    ):
        client.create(
            [SoapObject("DataExtension", {"Name": "a"}), SoapObject("DataExtension", {"Name": "b"})]
        )


@responses.activate
def test_an_overall_status_other_than_ok_fails_even_without_an_error_result(client):
    responses.post(SOAP_URL, **created(("OK", "Updated"), overall="Error", action="Update"))
    with pytest.raises(PermanentError, match="OverallStatus 'Error'"):
        client.update([SoapObject("DataExtension", {"CustomerKey": "k"})])


@responses.activate
def test_a_retrieve_error_status_is_permanent(client):
    responses.post(
        SOAP_URL,
        **answer(
            f'<RetrieveResponseMsg xmlns="{PARTNER_API}"><OverallStatus>Error: The Request Property(s) Foo '
            "do not match</OverallStatus></RetrieveResponseMsg>"
        ),
    )
    with pytest.raises(PermanentError, match="Property"):
        client.retrieve("DataExtension", ["Foo"])


@responses.activate
def test_throttling_is_http_500_with_a_fault_and_raises_throttled(client):
    responses.post(
        SOAP_URL, **fault("Server", "Rate limit exceeded: requests are throttled to a limited rate")
    )
    with pytest.raises(Throttled) as caught:
        client.retrieve("DataFolder", ["ID"])
    assert caught.value.retry_after > 0 and caught.value.status == 500


@responses.activate
def test_other_server_faults_and_5xx_are_retryable_client_faults_permanent(client):
    responses.post(SOAP_URL, **fault("Server", "UnexpectedError"))
    responses.post(SOAP_URL, body="<html>bad gateway</html>", status=502)
    responses.post(SOAP_URL, **fault("Client", "Unable to determine the SOAP action"))
    for expected in (RetryableError, RetryableError, PermanentError):
        with pytest.raises(expected) as caught:
            client.retrieve("DataFolder", ["ID"])
        assert not isinstance(caught.value, Throttled)


@responses.activate
def test_an_auth_fault_invalidates_the_token_and_sends_once_more(client, tokens):
    issued, _fetch = tokens
    responses.post(SOAP_URL, **fault("Security", "Login Failed"))
    responses.post(SOAP_URL, **created(("OK", "created")))
    client.create([SoapObject("DataFolder", {"Name": "x"})])
    assert issued == ["token-1", "token-2"]
    assert [sent(i).findtext("s:Header/f:fueloauth", namespaces=NS) for i in (0, 1)] == issued


@responses.activate
def test_a_second_auth_fault_raises_unauthorized(client, tokens):
    responses.post(SOAP_URL, **fault("Security", "Login Failed"))
    responses.post(SOAP_URL, **fault("Security", "Login Failed"))
    with pytest.raises(Unauthorized):
        client.retrieve("DataFolder", ["ID"])
    assert len(responses.calls) == 2


@responses.activate
def test_an_answer_that_is_not_a_soap_envelope_is_retryable(client):
    """Chosen: a 2xx we cannot read is retried (the install retrieves before it creates, so a
    repeat is safe, and the task bounds the retries), never taken as success."""
    for body in ("not xml at all", "<html><body>proxy</body></html>", f'<Envelope xmlns="{SOAP_ENV}">'):
        responses.post(SOAP_URL, body=body, status=200)
    for _ in range(3):
        with pytest.raises(RetryableError, match="not a SOAP envelope"):
            client.retrieve("DataFolder", ["ID"])


@responses.activate
def test_an_envelope_without_the_expected_response_is_retryable(client):
    responses.post(SOAP_URL, **created(("OK", "x")))  # a CreateResponse to a Retrieve
    with pytest.raises(RetryableError, match="RetrieveResponseMsg"):
        client.retrieve("DataFolder", ["ID"])


@responses.activate
def test_a_read_timeout_is_an_unknown_outcome(client):
    responses.post(SOAP_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(UnknownOutcome):
        client.create([SoapObject("DataFolder", {"Name": "x"})])


def test_the_parser_expands_no_entities_and_refuses_a_doctype(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    doc = f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]><x>&e;</x>'
    with pytest.raises(etree.XMLSyntaxError):
        parse_xml(doc.encode())
    billion = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><x>&b;</x>'
    with pytest.raises(etree.XMLSyntaxError):
        parse_xml(billion.encode())
    assert json.dumps(parse_xml(b"<x>ok</x>").text) == '"ok"'
