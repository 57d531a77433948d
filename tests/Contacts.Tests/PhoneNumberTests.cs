using System.Text.Json;
using Crm.Contacts.Features.Contacts;

namespace Crm.Contacts.Tests;

/// <summary>Our E.164 normalisation agrees with libphonenumber's own example numbers and test cases (data/phone_vectors.json).</summary>
public sealed class PhoneNumberTests
{
    public static TheoryData<string, string?, string?> Vectors()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "data", "phone_vectors.json")));
        var data = new TheoryData<string, string?, string?>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            data.Add(c.GetProperty("input").GetString()!, c.GetProperty("region").GetString(), c.GetProperty("expectedE164").GetString());
        return data;
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Should_agree_with_libphonenumber_vectors(string input, string? region, string? expected)
    {
        var ok = ContactFields.TryNormalisePhone(input, region ?? "ZZ", out var e164, out var error);
        if (expected is null)
        {
            Assert.False(ok, $"'{input}' ({region}) should be rejected but became {e164}");
            Assert.NotEmpty(error);
        }
        else
        {
            Assert.True(ok, error);
            Assert.Equal(expected, e164);
        }
    }

    [Theory]
    [InlineData("010-1234-5678", "+821012345678")]
    [InlineData("010 1234 5678", "+821012345678")]
    [InlineData("+82 10-1234-5678", "+821012345678")]
    [InlineData("02-123-4567", "+8221234567")]
    public void Should_read_korean_national_formats_in_a_korean_workspace(string input, string expected)
    {
        Assert.True(ContactFields.TryNormalisePhone(input, "KR", out var e164, out var error), error);
        Assert.Equal(expected, e164);
    }

    [Theory]
    [InlineData("13085.0", "13085")]
    [InlineData("13085", "13085")]
    [InlineData("A-13.0", "A-13.0")]
    [InlineData(" 42.00 ", "42")]
    public void Should_read_spreadsheet_float_ids_as_integers(string raw, string expected) =>
        Assert.Equal(expected, ContactFields.NormaliseExternalId(raw));
}
