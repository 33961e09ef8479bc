"""Sample vendor payloads shared by the unit tests."""

from pipeline.settings import load_settings
from pipeline.subscriptions.webhooks import receipt_ttl_seconds

# a webhook receipt's lifetime under the default WEBHOOK_RECEIPT_DAYS
RECEIPT_TTL = receipt_ttl_seconds(load_settings({}))

SUBSCRIBE = {
    "eventId": "b1c9a8e2-3f0d-4c55-9a2e-5b0d7f6c1e42",
    "eventType": "Subscribe",
    "eventDetails": {
        "actionType": "SubscriptionViaCalendarPage",
        "accountId": "0b98ef2c-f739-45f1-81e3-b2def2bb868f",
        "accountName": "Your Account",
        "accountCode": "your-account",
        "subscription": {
            "calendarSubscriptionId": "06423672-b6ba-4536-aa36-70788a7a0a36",
            "calendarId": "4a2d4acb-bd05-e511-af43-067f1c947754",
            "calendarTitle": "My Sports Calendar",
            "calendarCode": "my-sports-calendar",
            "subscriptionMethod": "Google",
            "calendarTags": [
                {"tagId": "6513319e-d3e1-4497-89ee-b5dcee9a58bc", "tagText": "Team A"},
                {"tagId": "7513319e-d3e1-4497-89ee-b5dcee9a58bc", "text": "Team B"},
            ],
            "subscriberId": "0031X00000abcDE",
            "emailAddress": "fan@example.com",
            "optIn1": True,
            "optIn2": False,
            "countryCode": "AU",
            "geoCountry": "Australia",
            "deviceName": "Desktop",
            "source": "your-account.calendar.example",
            "referrer": "https://www.example.com/fixtures",
            "utmSource": "newsletter",
            "utmMedium": "email",
            "utmCampaign": "dec-launch",
            "utmContent": "hero-button",
            "timeZoneId": "AUS Eastern Standard Time",
            "someNewField": "ignored",
        },
    },
}
