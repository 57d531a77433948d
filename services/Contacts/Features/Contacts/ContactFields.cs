using System.Globalization;
using System.Net.Mail;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Crm.BuildingBlocks.Errors;
using Crm.Contacts.V1;
using Google.Protobuf.WellKnownTypes;
using PhoneNumbers;

namespace Crm.Contacts.Features.Contacts;

/// <summary>Normalisation and validation of contact fields, shared by the API and the CSV import.</summary>
public static class ContactFields
{
    private static readonly PhoneNumberUtil Phones = PhoneNumberUtil.GetInstance();

    /// <summary>E.164, reading national numbers in the workspace's region (KR: 010-1234-5678 → +821012345678).</summary>
    public static bool TryNormalisePhone(string raw, string defaultRegion, out string e164, out string error)
    {
        e164 = "";
        error = "";
        try
        {
            var number = Phones.Parse(raw, defaultRegion);
            if (!Phones.IsValidNumber(number) && !MatchesNumberingPlan(number))
            {
                error = $"'{raw}' is not a valid phone number for region {Phones.GetRegionCodeForNumber(number) ?? defaultRegion}";
                return false;
            }
            e164 = Phones.Format(number, PhoneNumberFormat.E164);
            return true;
        }
        catch (NumberParseException ex)
        {
            error = $"'{raw}' is not a phone number ({ex.ErrorType})";
            return false;
        }
    }

    /// <summary>
    /// A number of a possible length that fits the region's general numbering plan, though no known
    /// number type (new ranges reach carriers before the metadata does; libphonenumber-js accepts these too).
    /// </summary>
    private static bool MatchesNumberingPlan(PhoneNumber number)
    {
        var region = Phones.GetRegionCodeForCountryCode(number.CountryCode);
        var metadata = Phones.GetMetadataForRegion(region);
        if (metadata is null || Phones.IsPossibleNumberWithReason(number) != PhoneNumberUtil.ValidationResult.IS_POSSIBLE) return false;
        var national = Phones.GetNationalSignificantNumber(number);
        return System.Text.RegularExpressions.Regex.IsMatch(national, "^(?:" + metadata.GeneralDesc.NationalNumberPattern + ")$");
    }

    public static bool TryNormaliseEmail(string raw, out string email)
    {
        email = raw.Trim();
        if (email.Length is 0 or > 320 || email.Contains(' ', StringComparison.Ordinal)) return false;
        if (!MailAddress.TryCreate(email, out var parsed) || parsed.Address != email) return false;
        var at = email.LastIndexOf('@');
        if (at <= 0 || !email.AsSpan(at + 1).Contains('.')) return false;
        // The domain part is case-insensitive; the local part is kept as given.
        email = email[..at] + email[at..].ToLowerInvariant();
        return true;
    }

    public static bool IsValidTimeZone(string tz) => TimeZoneInfo.TryFindSystemTimeZoneById(tz, out _);

    public static bool IsValidLocale(string locale)
    {
        if (locale.Length is 0 or > 35) return false;
        try
        {
            return !CultureInfo.GetCultureInfo(locale, predefinedOnly: true).Equals(CultureInfo.InvariantCulture);
        }
        catch (CultureNotFoundException)
        {
            return false;
        }
    }

    public static bool IsValidKey(string key, int max = 128) =>
        key.Length > 0 && key.Length <= max && !key.Any(char.IsControl);

    /// <summary>Spreadsheets write integer ids as floats ("13085.0"); the customer id is the integer.</summary>
    public static string NormaliseExternalId(string raw)
    {
        var s = raw.Trim();
        var dot = s.IndexOf('.', StringComparison.Ordinal);
        if (dot > 0 && s.AsSpan(0, dot).IndexOfAnyExceptInRange('0', '9') < 0 && s.AsSpan(dot + 1).IndexOfAnyExcept('0') < 0)
            return s[..dot];
        return s;
    }

    /// <summary>Suppression entries keep only this hash of an erased identity (the SQL function suppression_hash is the same).</summary>

    // Attributes are stored as JSON: strings, numbers and booleans as themselves, dates as {"$date": "<ISO 8601 UTC>"}.

    public static JsonNode? ToJson(AttributeValue value) => value.KindCase switch
    {
        AttributeValue.KindOneofCase.StringValue => JsonValue.Create(value.StringValue),
        AttributeValue.KindOneofCase.NumberValue => JsonValue.Create(value.NumberValue),
        AttributeValue.KindOneofCase.BoolValue => JsonValue.Create(value.BoolValue),
        AttributeValue.KindOneofCase.DateValue => new JsonObject { ["$date"] = value.DateValue.ToDateTime().ToString("O", CultureInfo.InvariantCulture) },
        _ => null,
    };

    public static AttributeValue FromJson(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o when o["$date"] is JsonValue d && DateTime.TryParse(d.GetValue<string>(), CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var date):
                return new AttributeValue { DateValue = Timestamp.FromDateTime(date) };
            case JsonValue v when v.TryGetValue<bool>(out var b):
                return new AttributeValue { BoolValue = b };
            case JsonValue v when v.TryGetValue<double>(out var n):
                return new AttributeValue { NumberValue = n };
            case JsonValue v when v.TryGetValue<string>(out var s):
                return new AttributeValue { StringValue = s };
            default:
                return new AttributeValue();
        }
    }

    /// <summary>Parses a CSV cell as an attribute of the given type.</summary>
    public static bool TryParseAttribute(string raw, AttributeType type, out JsonNode? node)
    {
        node = null;
        switch (type)
        {
            case AttributeType.Number when double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var n):
                node = JsonValue.Create(n);
                return true;
            case AttributeType.Boolean:
                var lower = raw.Trim().ToLowerInvariant();
                if (lower is "true" or "1" or "yes" or "y") { node = JsonValue.Create(true); return true; }
                if (lower is "false" or "0" or "no" or "n") { node = JsonValue.Create(false); return true; }
                return false;
            case AttributeType.Date when DateTime.TryParse(raw, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var d):
                node = new JsonObject { ["$date"] = d.ToString("O", CultureInfo.InvariantCulture) };
                return true;
            case AttributeType.String or AttributeType.Unspecified:
                node = JsonValue.Create(raw);
                return true;
            default:
                return false;
        }
    }
}

/// <summary>The protobuf enums as the lower-case words stored in the database and carried in events.</summary>
public static class Words
{
    public static string Of(Channel c) => c switch
    {
        Channel.Email => "email",
        Channel.Sms => "sms",
        Channel.Push => "push",
        Channel.Kakao => "kakao",
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };

    public static Channel ToChannel(string s) => s switch
    {
        "email" => Channel.Email,
        "sms" => Channel.Sms,
        "push" => Channel.Push,
        "kakao" => Channel.Kakao,
        _ => Channel.Unspecified,
    };

    public static string Of(Purpose p) => p switch
    {
        Purpose.Marketing => "marketing",
        Purpose.Transactional => "transactional",
        Purpose.MarketingNight => "marketing_night",
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    public static Purpose ToPurpose(string s) => s switch
    {
        "marketing" => Purpose.Marketing,
        "transactional" => Purpose.Transactional,
        "marketing_night" => Purpose.MarketingNight,
        _ => Purpose.Unspecified,
    };

    public static string Of(ConsentStatus s) => s switch
    {
        ConsentStatus.OptedIn => "opted_in",
        ConsentStatus.OptedOut => "opted_out",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    public static ConsentStatus ToStatus(string s) => s switch
    {
        "opted_in" => ConsentStatus.OptedIn,
        "opted_out" => ConsentStatus.OptedOut,
        _ => ConsentStatus.Unspecified,
    };

    public static string Of(ConsentSource s) => s switch
    {
        ConsentSource.Form => "form",
        ConsentSource.Import => "import",
        ConsentSource.Api => "api",
        ConsentSource.UnsubscribeLink => "unsubscribe_link",
        ConsentSource.StopReply => "stop_reply",
        ConsentSource.Admin => "admin",
        ConsentSource.Provider => "provider",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    public static ConsentSource ToSource(string s) => s switch
    {
        "form" => ConsentSource.Form,
        "import" => ConsentSource.Import,
        "api" => ConsentSource.Api,
        "unsubscribe_link" => ConsentSource.UnsubscribeLink,
        "stop_reply" => ConsentSource.StopReply,
        "admin" => ConsentSource.Admin,
        "provider" => ConsentSource.Provider,
        _ => ConsentSource.Unspecified,
    };

    public static string Of(OrderStatus s) => s switch
    {
        OrderStatus.Completed or OrderStatus.Unspecified => "completed",
        OrderStatus.Cancelled => "cancelled",
        OrderStatus.Refunded => "refunded",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    public static OrderStatus ToOrderStatus(string s) => s switch
    {
        "completed" => OrderStatus.Completed,
        "cancelled" => OrderStatus.Cancelled,
        "refunded" => OrderStatus.Refunded,
        _ => OrderStatus.Unspecified,
    };

    public static EngagementType ToEngagementType(string s) => s switch
    {
        "delivered" => EngagementType.Delivered,
        "opened" => EngagementType.Opened,
        "clicked" => EngagementType.Clicked,
        "converted" => EngagementType.Converted,
        "custom" => EngagementType.Custom,
        "bounced" => EngagementType.Bounced,
        "complained" => EngagementType.Complained,
        "unsubscribed" => EngagementType.Unsubscribed,
        "machine_opened" => EngagementType.MachineOpened,
        _ => EngagementType.Unspecified,
    };

    public static string Of(EngagementType t) => t switch
    {
        EngagementType.Delivered => "delivered",
        EngagementType.Opened => "opened",
        EngagementType.Clicked => "clicked",
        EngagementType.Converted => "converted",
        EngagementType.Custom => "custom",
        EngagementType.Bounced => "bounced",
        EngagementType.Complained => "complained",
        EngagementType.Unsubscribed => "unsubscribed",
        EngagementType.MachineOpened => "machine_opened",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}

public static class Timestamps
{
    public static Timestamp Of(DateTime utc) => Timestamp.FromDateTime(DateTime.SpecifyKind(utc, DateTimeKind.Utc));

    public static Timestamp? OfNullable(DateTime? utc) => utc is { } v ? Of(v) : null;
}
