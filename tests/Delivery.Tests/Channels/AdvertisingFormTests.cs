using System.Text.Json;
using Crm.Delivery.Channels;

namespace Crm.Delivery.Tests.Channels;

public sealed class KoreanSmsAdTests
{
    [Fact]
    public void Marks_the_sender_first_and_the_free_opt_out_last()
    {
        Assert.Equal(
            "(광고)크림샵\n봄 세일 최대 50% 할인\n무료수신거부 080-123-4567",
            AdvertisingForm.KoreanSmsAd("봄 세일 최대 50% 할인", "크림샵", "080-123-4567"));
    }

    [Fact]
    public void Is_idempotent()
    {
        var once = AdvertisingForm.KoreanSmsAd("봄 세일", "크림샵", "080-123-4567");

        Assert.Equal(once, AdvertisingForm.KoreanSmsAd(once, "크림샵", "080-123-4567"));
    }

    [Fact]
    public void Leaves_a_body_that_already_carries_both_marks_alone()
    {
        const string body = "(광고)다른샵\n여름 세일\n무료수신거부 080-999-0000";

        Assert.Equal(body, AdvertisingForm.KoreanSmsAd(body, "크림샵", "080-123-4567"));
    }

    [Fact]
    public void Adds_only_the_opt_out_line_to_a_body_marked_without_one()
    {
        Assert.Equal(
            "(광고)크림샵\n여름 세일\n무료수신거부 080-123-4567",
            AdvertisingForm.KoreanSmsAd("(광고)크림샵\n여름 세일", "크림샵", "080-123-4567"));
    }

    [Theory]
    [InlineData("", "080-123-4567")]
    [InlineData("크림샵", " ")]
    public void Refuses_a_missing_sender_or_opt_out_number(string sender, string number)
    {
        Assert.ThrowsAny<ArgumentException>(() => AdvertisingForm.KoreanSmsAd("봄 세일", sender, number));
    }
}

/// <summary>UnsubscribeHeaders against RFC 8058 / RFC 2369 cases (data/email_unsubscribe_vectors.json).</summary>
public sealed class UnsubscribeHeadersTests
{
    private static readonly Lazy<JsonElement> Vectors = new(() =>
    {
        using var file = File.OpenRead(Path.Combine(AppContext.BaseDirectory, "data", "email_unsubscribe_vectors.json"));
        using var json = JsonDocument.Parse(file);
        return json.RootElement.Clone();
    });

    public static TheoryData<string> CaseNames => new(Names("cases"));

    public static TheoryData<string> ExampleNames => new(Names("rfcExamples"));

    [Theory]
    [MemberData(nameof(ExampleNames))]
    public void The_RFC2369_client_parser_used_below_reads_the_RFC_examples(string name)
    {
        var example = Find("rfcExamples", name);

        Assert.Equal(Strings(example, "uris"), ListUnsubscribeParser.Uris(example.GetProperty("listUnsubscribe").GetString()!));
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Headers_follow_RFC8058_and_RFC2369(string name)
    {
        var c = Find("cases", name);
        var httpsUrl = OptionalString(c, "httpsUrl");
        var mailto = OptionalString(c, "mailto");
        if (c.TryGetProperty("error", out var error) && error.GetBoolean())
        {
            Assert.ThrowsAny<ArgumentException>(() => AdvertisingForm.UnsubscribeHeaders(httpsUrl, mailto));
            return;
        }

        var headers = AdvertisingForm.UnsubscribeHeaders(httpsUrl, mailto);

        var listUnsubscribe = headers[AdvertisingForm.ListUnsubscribe];
        Assert.Equal(c.GetProperty("listUnsubscribe").GetString(), listUnsubscribe);
        var expectedPost = OptionalString(c, "listUnsubscribePost");
        Assert.Equal(expectedPost, headers.TryGetValue(AdvertisingForm.ListUnsubscribePost, out var post) ? post : null);
        Assert.Equal(expectedPost is null ? 1 : 2, headers.Count);

        // What a receiver reads: the URIs given, in our order of preference, and for one-click exactly one https URI.
        var uris = ListUnsubscribeParser.Uris(listUnsubscribe);
        Assert.Equal(new[] { httpsUrl, mailto is null || mailto.StartsWith("mailto:", StringComparison.Ordinal) ? mailto : "mailto:" + mailto }
            .OfType<string>(), uris);
        if (expectedPost is not null)
        {
            Assert.Single(uris, u => u.StartsWith("https:", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Nothing_to_offer_means_no_headers()
    {
        Assert.Empty(AdvertisingForm.UnsubscribeHeaders(null, null));
    }

    private static IEnumerable<string> Names(string list) =>
        Vectors.Value.GetProperty(list).EnumerateArray().Select(c => c.GetProperty("name").GetString()!);

    private static JsonElement Find(string list, string name) =>
        Vectors.Value.GetProperty(list).EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    private static string? OptionalString(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static List<string> Strings(JsonElement element, string property) =>
        element.GetProperty(property).EnumerateArray().Select(v => v.GetString()!).ToList();
}

/// <summary>
/// RFC 2369 §2 client rules, as a mailbox provider applies them: leading whitespace and (comments) are
/// skipped, the field must start with '&lt;', only a comma continues the list, and a sub-item that is
/// not a bracketed URL ends it. Whitespace inside brackets is ignored (and must never be generated).
/// </summary>
internal static class ListUnsubscribeParser
{
    public static List<string> Uris(string value)
    {
        var uris = new List<string>();
        var i = 0;
        while (true)
        {
            i = SkipWhitespaceAndComments(value, i);
            if (i >= value.Length || value[i] != '<')
            {
                return uris;
            }
            var close = value.IndexOf('>', i);
            if (close < 0)
            {
                return uris;
            }
            uris.Add(string.Concat(value[(i + 1)..close].Where(c => !char.IsWhiteSpace(c))));
            i = SkipWhitespaceAndComments(value, close + 1);
            if (i >= value.Length || value[i] != ',')
            {
                return uris;
            }
            i++;
        }
    }

    private static int SkipWhitespaceAndComments(string value, int i)
    {
        while (i < value.Length)
        {
            if (char.IsWhiteSpace(value[i]))
            {
                i++;
            }
            else if (value[i] == '(')
            {
                var depth = 0;
                do
                {
                    depth += value[i] switch { '(' => 1, ')' => -1, _ => 0 };
                    i++;
                }
                while (i < value.Length && depth > 0);
            }
            else
            {
                break;
            }
        }
        return i;
    }
}
